"""Signed mode: a model the test signs with its own EC P-256 key, served over loopback."""

import base64
import json
import os
import subprocess
import sys

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils import _model_manifest as mm
from ansible_collections.autoglm.fleet.plugins.module_utils._download import FetchError, Options
from ansible_collections.autoglm.fleet.plugins.module_utils._model_fetch import fetch_model
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def keypair(path, name):
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = path / (name + ".key"), path / (name + ".pub")
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(priv), str(pub)


@pytest.fixture(scope="module")
def signed_model(tmp_path_factory, repo_root):
    root = tmp_path_factory.mktemp("signed")
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    files = {"model.safetensors": os.urandom(300 * 1024), "config.json": b"{}\n", "sub/tok.bin": os.urandom(999)}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    priv, pub = keypair(root, "signer")
    other_pub = keypair(root, "other")[1]
    subprocess.run([sys.executable, str(repo_root / "scripts" / "model-sign"), "sign", str(src),
                    "--private-key", priv, "--manifest"], check=True, capture_output=True)
    return {"src": src, "files": files, "pub": pub, "other_pub": other_pub}


def opts():
    return Options(chunk_size=64 * 1024, connections=3, retries=2, backoff=0.01, backoff_max=0.02, timeout=5)


def test_signed_fetch_verifies_and_is_idempotent(tmp_path, signed_model, mirror):
    m = signed_model
    dest = tmp_path / "dest"
    with mirror(m["src"]) as srv:
        res = fetch_model(str(dest), [{"url": srv.url}], opts(), public_key=m["pub"])
        assert res["signed"] is True and res["changed"] is True
        assert sorted(f["path"] for f in res["files"]) == sorted(m["files"])
        for rel, data in m["files"].items():
            assert (dest / rel).read_bytes() == data
        assert (dest / "model.sig").read_bytes() == (m["src"] / "model.sig").read_bytes()
        assert not (dest / "manifest.json").exists()  # only what the statement lists is fetched
        again = fetch_model(str(dest), [{"url": srv.url}], opts(), public_key=m["pub"])
        assert again["changed"] is False
        assert {f["status"] for f in again["files"]} == {"present"}


def test_wrong_key_refused_before_any_download(tmp_path, signed_model, mirror):
    m = signed_model
    with mirror(m["src"]) as srv:
        with pytest.raises(mm.ManifestError, match="does not verify"):
            fetch_model(str(tmp_path / "dest"), [{"url": srv.url}], opts(), public_key=m["other_pub"])
        assert set(srv.requests) == {"model.sig"}  # nothing but the signature was requested
    assert not (tmp_path / "dest").exists()


def test_tampered_signature_refused(tmp_path, signed_model, mirror):
    m = signed_model
    bundle = json.loads((m["src"] / "model.sig").read_text())
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    payload["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    sig = tmp_path / "evil.sig"
    sig.write_text(json.dumps(bundle))
    with mirror(m["src"]) as srv, pytest.raises(mm.ManifestError, match="does not verify"):
        fetch_model(str(tmp_path / "dest"), [{"url": srv.url}], opts(), public_key=m["pub"], signature=str(sig))


def test_signed_file_tampered_on_mirror_never_placed(tmp_path, signed_model, mirror):
    m = signed_model
    with mirror(m["src"]) as srv:
        srv.faults.flip["model.safetensors"] = 1234
        with pytest.raises(FetchError, match=r"model\.safetensors.*SHA-256 mismatch"):
            fetch_model(str(tmp_path / "dest"), [{"url": srv.url}], opts(), public_key=m["pub"])
    assert not (tmp_path / "dest" / "model.safetensors").exists()


def test_extra_file_in_dest_fails_library_verify(tmp_path, signed_model, mirror):
    m = signed_model
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "intruder.py").write_text("print('hi')\n")
    with mirror(m["src"]) as srv, pytest.raises(mm.ManifestError, match=r"intruder\.py"):
        fetch_model(str(dest), [{"url": srv.url}], opts(), public_key=m["pub"])


def test_unsigned_refused_unless_allowed(tmp_path, signed_model, mirror):
    m = signed_model
    with mirror(m["src"]) as srv:
        with pytest.raises(mm.ManifestError, match="require_signature"):
            fetch_model(str(tmp_path / "d"), [{"url": srv.url}], opts())
        res = fetch_model(str(tmp_path / "d"), [{"url": srv.url}], opts(), require_signature=False)
    assert res["signed"] is False and res["unsigned_manifest"] is True


def test_missing_library_message(tmp_path, signed_model, collections_dir):
    """A host whose model_signing cannot be imported (here: one that needs the missing OpenSSL module)."""
    broken = tmp_path / "site" / "model_signing"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError(\"No module named 'OpenSSL'\")\n")
    program = (
        "import sys\n"
        "from ansible_collections.autoglm.fleet.plugins.module_utils._download import Options\n"
        "from ansible_collections.autoglm.fleet.plugins.module_utils._model_fetch import fetch_model\n"
        "from ansible_collections.autoglm.fleet.plugins.module_utils._model_manifest import ManifestError\n"
        "try:\n"
        "    fetch_model(sys.argv[1], [{'url': 'http://127.0.0.1:9'}], Options(), public_key=sys.argv[2])\n"
        "except ManifestError as exc:\n"
        "    print(exc)\n"
    )
    path = [str(tmp_path / "site"), str(collections_dir)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.run([sys.executable, "-c", program, str(tmp_path / "d"), signed_model["pub"]],
                          capture_output=True, text=True, env=env, check=True)
    assert "No module named 'OpenSSL'" in proc.stdout
    assert "install model-signing and pyopenssl in the runtime venv" in proc.stdout
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty"),
        ('[{"path": "../x", "size": 1, "sha256": "%s"}]' % ("a" * 64), "unsafe path"),
        ('[{"path": "x", "size": -1, "sha256": "%s"}]' % ("a" * 64), "valid size"),
        ('[{"path": "x", "size": true, "sha256": "%s"}]' % ("a" * 64), "valid size"),
        ('[{"path": "x", "size": 1, "sha256": "abc"}]', "valid sha256"),
        ('[{"path": "x", "size": 1, "sha256": "%s"}, {"path": "x", "size": 1, "sha256": "%s"}]'
         % ("a" * 64, "a" * 64), "twice"),
        ("[1]", "not an object"),
    ],
)
def test_parse_unsigned_rejects(doc, fragment):
    with pytest.raises(mm.ManifestError, match=fragment):
        mm.parse_unsigned(doc)


def test_parse_unsigned_accepts_files_object():
    files = mm.parse_unsigned(json.dumps({"files": [{"path": "a/b", "size": 0, "sha256": "A" * 64}]}))
    assert files == [{"path": "a/b", "size": 0, "sha256": "a" * 64}]


@pytest.mark.parametrize(
    "specs, fragment",
    [([], "no sources"), ([{"type": "hf", "url": "https://x"}], "needs model_id"), ([{"url": ""}], "no url"),
     ([{"url": "ftp://x"}], "http://")],
)
def test_build_sources_rejects(specs, fragment):
    with pytest.raises(mm.ManifestError, match=fragment):
        mm.build_sources(specs, "", "main")
