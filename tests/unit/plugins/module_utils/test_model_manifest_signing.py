"""Signed mode: a model the test signs with its own EC P-256 key, served over loopback."""

import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils import _model_manifest as mm
from ansible_collections.autoglm.fleet.plugins.module_utils._download import FetchError, Options
from ansible_collections.autoglm.fleet.plugins.module_utils._model_fetch import fetch_model
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import hashing
from model_signing._signing import sign_ec_key, signing

MODEL_ID, REVISION = "org/signed", "r1"


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
    sign = [sys.executable, str(repo_root / "scripts" / "model-sign"), "sign"]
    subprocess.run([*sign, str(src), "--private-key", priv, "--manifest", "--model-id", MODEL_ID,
                    "--revision", REVISION], check=True, capture_output=True)
    # the same key signs another model, and an older revision of this one (same files, other binding)
    other = root / "other"
    other.mkdir()
    (other / "weights.bin").write_bytes(os.urandom(1000))
    subprocess.run([*sign, str(other), "--private-key", priv, "--model-id", "org/other", "--revision", REVISION],
                   check=True, capture_output=True)
    subprocess.run([*sign, str(src), "--private-key", priv, "--signature", str(root / "r0.sig"), "--model-id",
                    MODEL_ID, "--revision", "r0"], check=True, capture_output=True)
    # and the library's own CLI signs it with no binding at all
    subprocess.run([sys.executable, "-m", "model_signing", "sign", "key", str(src), "--private_key", priv,
                    "--signature", str(root / "unbound.sig")], check=True, capture_output=True)
    return {"src": src, "files": files, "pub": pub, "other_pub": other_pub, "priv": priv,
            "other_sig": str(other / "model.sig"), "r0_sig": str(root / "r0.sig"),
            "unbound_sig": str(root / "unbound.sig")}


def opts():
    return Options(chunk_size=64 * 1024, connections=3, retries=2, backoff=0.01, backoff_max=0.02, timeout=5)


def fetch_signed(dest, url, public_key, **kwargs):
    """fetch_model in signed mode from one mirror, asking for MODEL_ID at REVISION unless told otherwise."""
    kwargs.setdefault("model_id", MODEL_ID)
    kwargs.setdefault("revision", REVISION)
    return fetch_model(str(dest), [{"url": url}], opts(), public_key=public_key, **kwargs)


def test_signed_fetch_verifies_and_is_idempotent(tmp_path, signed_model, mirror):
    m = signed_model
    dest = tmp_path / "dest"
    with mirror(m["src"]) as srv:
        res = fetch_signed(dest, srv.url, m["pub"])
        assert res["signed"] is True and res["changed"] is True
        assert sorted(f["path"] for f in res["files"]) == sorted(m["files"])
        for rel, data in m["files"].items():
            assert (dest / rel).read_bytes() == data
        assert (dest / "model.sig").read_bytes() == (m["src"] / "model.sig").read_bytes()
        assert not (dest / "manifest.json").exists()  # only what the statement lists is fetched
        again = fetch_signed(dest, srv.url, m["pub"])
        assert again["changed"] is False
        assert {f["status"] for f in again["files"]} == {"present"}


def test_wrong_key_refused_before_any_download(tmp_path, signed_model, mirror):
    m = signed_model
    with mirror(m["src"]) as srv:
        with pytest.raises(mm.ManifestError, match="does not verify"):
            fetch_signed(tmp_path / "dest", srv.url, m["other_pub"])
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
        fetch_signed(tmp_path / "dest", srv.url, m["pub"], signature=str(sig))


@pytest.mark.parametrize(
    ("which", "model_id", "revision", "named"),
    [
        ("other_sig", MODEL_ID, REVISION, ["model org/other revision r1", "model_id org/signed revision r1"]),
        ("r0_sig", MODEL_ID, REVISION, ["model org/signed revision r0", "model_id org/signed revision r1"]),
        ("own", MODEL_ID, "r2", ["model org/signed revision r1", "model_id org/signed revision r2"]),
        ("own", "org/other", REVISION, ["model org/signed revision r1", "model_id org/other revision r1"]),
        ("own", "", REVISION, ["model org/signed revision r1", "model_id is empty"]),
    ],
    ids=["another-model", "older-revision", "asked-another-revision", "asked-another-model", "asked-nothing"],
)
def test_signature_for_another_model_or_revision_refused_before_download(tmp_path, signed_model, mirror, which,
                                                                         model_id, revision, named):
    """The right key, a valid signature: but it is for another model or revision than the one asked for."""
    m = signed_model
    signature = "model.sig" if which == "own" else m[which]
    with mirror(m["src"]) as srv:
        with pytest.raises(mm.ManifestError) as err:
            fetch_signed(tmp_path / "dest", srv.url, m["pub"], signature=signature, model_id=model_id,
                         revision=revision)
        assert set(srv.requests) <= {"model.sig"}  # nothing but the signature was requested
    for fragment in named:
        assert fragment in str(err.value)
    assert "nothing was downloaded" in str(err.value)
    assert not (tmp_path / "dest").exists()


def test_signature_without_model_binding_refused(tmp_path, signed_model, mirror):
    m = signed_model
    with mirror(m["src"]) as srv, pytest.raises(mm.ManifestError) as err:
        fetch_signed(tmp_path / "dest", srv.url, m["pub"], signature=m["unbound_sig"])
    assert "does not say which model and revision it is for" in str(err.value)
    assert "--model-id org/signed --revision r1" in str(err.value)
    assert not (tmp_path / "dest").exists()


def test_signed_sizes_skip_a_stale_mirror(tmp_path, signed_model, mirror):
    """The first mirror has an older, shorter copy of a file: with the sizes signed it is skipped for that file,
    not trusted for the size (which made every correct mirror after it fail)."""
    m = signed_model
    stale = tmp_path / "stale"
    shutil.copytree(m["src"], stale)
    (stale / "model.safetensors").write_bytes(m["files"]["model.safetensors"][:100 * 1024])
    first, second = mirror(stale), mirror(m["src"])
    dest = tmp_path / "dest"
    res = fetch_model(str(dest), [{"url": first.url}, {"url": second.url}], opts(), public_key=m["pub"],
                      model_id=MODEL_ID, revision=REVISION)
    sources = {f["path"]: f["source"] for f in res["files"]}
    assert sources == {"model.safetensors": second.url, "config.json": first.url, "sub/tok.bin": first.url}
    assert first.settled()["model.safetensors"] == 1  # the one-byte probe only: its size was wrong
    for rel, data in m["files"].items():
        assert (dest / rel).read_bytes() == data


def test_negative_total_is_a_bad_mirror(tmp_path, signed_model, mirror):
    m = signed_model
    bad, good = mirror(m["src"]), mirror(m["src"])
    bad.faults.total["model.safetensors"] = "-5"
    dest = tmp_path / "dest"
    res = fetch_model(str(dest), [{"url": bad.url}, {"url": good.url}], opts(), public_key=m["pub"],
                      model_id=MODEL_ID, revision=REVISION)
    assert {f["path"]: f["source"] for f in res["files"]}["model.safetensors"] == good.url
    assert (dest / "model.safetensors").read_bytes() == m["files"]["model.safetensors"]
    with pytest.raises(FetchError, match=r"no source has model\.safetensors: .*Content-Range 'bytes 0-0/-5'"):
        fetch_signed(tmp_path / "alone", bad.url, m["pub"])


def test_signed_sizes_are_required(tmp_path, signed_model, mirror):
    """A statement bound to the model but without sizes (hand-made here with the library) is refused."""
    m = signed_model
    hashing_config = hashing.Config().use_file_serialization(hashing_algorithm="sha256")
    hashing_config.set_ignored_paths(paths=["model.sig", "manifest.json"], ignore_git_paths=True)
    payload = signing.Payload(hashing_config.hash(pathlib.Path(m["src"])))
    payload.statement.pb.predicate.update({mm.BINDING: {"model_id": MODEL_ID, "revision": REVISION}})
    sig = tmp_path / "nosizes.sig"
    sign_ec_key.Signer(pathlib.Path(m["priv"])).sign(payload).write(sig)
    with mirror(m["src"]) as srv, pytest.raises(mm.ManifestError, match=r"no signed size for config\.json"):
        fetch_signed(tmp_path / "dest", srv.url, m["pub"], signature=str(sig))
    assert not (tmp_path / "dest").exists()


def test_planted_signature_temp_link_is_never_written_through(tmp_path, signed_model, mirror):
    """dest/model.sig.tmp was where the signature copy was written with a plain open("wb"): a planted link
    there sent it outside dest. The copy now goes through a new temp file (O_EXCL|O_NOFOLLOW)."""
    m = signed_model
    dest = tmp_path / "dest"
    dest.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (dest / "model.sig.tmp").symlink_to(victim)
    with mirror(m["src"]) as srv, pytest.raises(mm.ManifestError, match=r"model\.sig\.tmp"):
        fetch_signed(dest, srv.url, m["pub"])  # the planted link is an extra file: the final verify fails
    assert victim.read_bytes() == b"keep me"
    assert (dest / "model.sig").read_bytes() == (m["src"] / "model.sig").read_bytes()


def test_signature_copy_that_is_a_symlink_is_refused(tmp_path, signed_model, mirror):
    m = signed_model
    dest = tmp_path / "dest"
    dest.mkdir()
    victim = tmp_path / "victim.sig"
    victim.write_bytes((m["src"] / "model.sig").read_bytes())
    (dest / "model.sig").symlink_to(victim)
    with mirror(m["src"]) as srv, pytest.raises(FetchError, match=r"model\.sig is a symbolic link"):
        fetch_signed(dest, srv.url, m["pub"])
    assert srv.settled() == {"model.sig": victim.stat().st_size}  # the signature only, nothing of the model


def test_signed_file_tampered_on_mirror_never_placed(tmp_path, signed_model, mirror):
    m = signed_model
    with mirror(m["src"]) as srv:
        srv.faults.flip["model.safetensors"] = 1234
        with pytest.raises(FetchError, match=r"model\.safetensors.*SHA-256 mismatch"):
            fetch_signed(tmp_path / "dest", srv.url, m["pub"])
    assert not (tmp_path / "dest" / "model.safetensors").exists()


def test_extra_file_in_dest_fails_library_verify(tmp_path, signed_model, mirror):
    m = signed_model
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "intruder.py").write_text("print('hi')\n")
    with mirror(m["src"]) as srv, pytest.raises(mm.ManifestError, match=r"intruder\.py"):
        fetch_signed(dest, srv.url, m["pub"])


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
        "    fetch_model(sys.argv[1], [{'url': 'http://127.0.0.1:9'}], Options(), public_key=sys.argv[2],\n"
        "                model_id='org/signed', revision='r1')\n"
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


class Spy:
    """Counts the calls of a real function and passes them through."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.fixture
def spies(monkeypatch):
    from ansible_collections.autoglm.fleet.plugins.module_utils import _download, _model_fetch

    hashed, verified = Spy(_download.sha256_file), Spy(_model_fetch.verify_directory)
    monkeypatch.setattr(_download, "sha256_file", hashed)
    monkeypatch.setattr(_model_fetch, "verify_directory", verified)
    return hashed, verified


def test_verified_record_spares_an_unchanged_run_every_hash(tmp_path, signed_model, mirror, spies):
    m, (hashed, verified) = signed_model, spies
    dest, record = tmp_path / "dest", tmp_path / "state" / "model.verified.json"
    with mirror(m["src"]) as srv:
        first = fetch_signed(dest, srv.url, m["pub"], verified_record=str(record))
        assert first["changed"] is True and first["verified"] == "hashed" and verified.calls == 1
        assert oct(record.stat().st_mode & 0o777) == "0o600"
        assert sorted(json.loads(record.read_text())["files"]) == sorted(m["files"])
        hashed.calls = verified.calls = 0
        again = fetch_signed(dest, srv.url, m["pub"], verified_record=str(record))
    assert again["changed"] is False and again["verified"] == "record"
    assert {f["status"] for f in again["files"]} == {"present"}
    assert hashed.calls == 0 and verified.calls == 0  # no byte of the weights was read


def test_bytes_changed_under_a_restored_mtime_are_hashed_and_replaced(tmp_path, signed_model, mirror, spies):
    m, (hashed, verified) = signed_model, spies
    dest, record = tmp_path / "dest", tmp_path / "model.verified.json"
    with mirror(m["src"]) as srv:
        fetch_signed(dest, srv.url, m["pub"], verified_record=str(record))
        weights = dest / "model.safetensors"
        st = weights.stat()
        data = bytearray(weights.read_bytes())
        data[100] ^= 0x01
        weights.write_bytes(bytes(data))  # same size, same inode
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back; ctime cannot be
        hashed.calls = verified.calls = 0
        res = fetch_signed(dest, srv.url, m["pub"], verified_record=str(record))
    by_path = {f["path"]: f["status"] for f in res["files"]}
    assert by_path["model.safetensors"] == "fetched" and res["changed"] is True and res["verified"] == "hashed"
    assert weights.read_bytes() == m["files"]["model.safetensors"]
    assert hashed.calls >= 1 and verified.calls == 1


def test_a_file_added_after_the_record_still_fails_verification(tmp_path, signed_model, mirror):
    m = signed_model
    dest, record = tmp_path / "dest", tmp_path / "model.verified.json"
    with mirror(m["src"]) as srv:
        fetch_signed(dest, srv.url, m["pub"], verified_record=str(record))
        (dest / "intruder.py").write_text("print('hi')\n")
        with pytest.raises(mm.ManifestError, match=r"intruder\.py"):
            fetch_signed(dest, srv.url, m["pub"], verified_record=str(record))
    assert not record.exists()  # forgotten before the run changed or verified anything


def test_a_record_made_for_another_signature_is_not_trusted(tmp_path, signed_model, mirror, spies):
    m, (hashed, verified) = signed_model, spies
    dest, record = tmp_path / "dest", tmp_path / "model.verified.json"
    with mirror(m["src"]) as srv:
        fetch_signed(dest, srv.url, m["pub"], verified_record=str(record))
        doc = json.loads(record.read_text())
        doc["key"] = "0" * 64  # as if recorded against another signature
        record.write_text(json.dumps(doc))
        hashed.calls = verified.calls = 0
        res = fetch_signed(dest, srv.url, m["pub"], verified_record=str(record))
    assert res["verified"] == "hashed" and res["changed"] is False
    assert hashed.calls == len(m["files"]) and verified.calls == 1
