"""The bundle manifest on real files in tmp dirs, signed and verified with real EC keys (model_signing key mode)."""

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils import _bundle_manifest as bm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

CREATED = "2026-12-05T10:00:00Z"
CONTENTS = {"target": "debian-12", "model": {"id": "org/model", "revision": "r1"}, "wheelhouse": {"vllm": "0.6.3"}}


def refused(text):
    """The bundle is refused with a message containing ``text``."""
    return pytest.raises(bm.BundleError, match=re.escape(text))


def keypair(path, name, password=None):
    key = ec.generate_private_key(ec.SECP256R1())
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    priv, pub = path / (name + ".key"), path / (name + ".pub")
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(priv), str(pub)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    priv, pub = keypair(root, "operator")
    other_priv, other_pub = keypair(root, "other")
    enc_priv, enc_pub = keypair(root, "encrypted", b"s3cret-passphrase")
    return {"priv": priv, "pub": pub, "other_priv": other_priv, "other_pub": other_pub, "enc_priv": enc_priv,
            "enc_pub": enc_pub}


FILES = {
    "apt/dists/bookworm/Release": b"Origin: autoglm\n",
    "apt/pool/main/d/docker-ce_27.3.1_amd64.deb": os.urandom(5000),
    "images/model-server.tar": os.urandom(70000),
    "wheelhouse/vllm-0.6.3-py3-none-any.whl": os.urandom(3000),
    "models/org/model/r1/model.safetensors": os.urandom(20000),
    "empty.txt": b"",
}


@pytest.fixture
def bundle(tmp_path):
    root = tmp_path / "bundle"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def sealed(bundle, keys):
    out = bm.seal(str(bundle), CONTENTS, keys["priv"], created=CREATED)
    assert out["changed"] is True
    return bundle


def test_seal_writes_canonical_manifest_of_every_file(sealed, keys):
    data = (sealed / "manifest.json").read_bytes()
    doc = json.loads(data)
    assert data == bm.dump(doc)  # canonical: re-dumping gives the same bytes
    assert data.endswith(b"\n") and data.isascii()
    assert doc["format"] == bm.FORMAT and doc["kind"] == "full" and doc["created"] == CREATED
    assert doc["contents"] == CONTENTS
    assert doc["files"] == {rel: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for rel, d in FILES.items()}
    assert doc["totals"] == {"files": len(FILES), "bytes": sum(len(d) for d in FILES.values())}
    assert not [n for n in os.listdir(sealed) if n.endswith(".tmp")]
    out = bm.verify(str(sealed), keys["pub"])
    assert out["manifest"]["id"] == doc["id"]
    assert out["manifest_sha256"] == hashlib.sha256(data).hexdigest()
    assert out["totals"]["files"] == len(FILES)


def test_signature_is_model_signing_key_mode(sealed, keys):
    """The library's own verifier accepts manifest.sig over manifest.json (the same key mode as models)."""
    import pathlib

    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    manifest = sign_ec_key.Verifier(pathlib.Path(keys["pub"])).verify(
        sign_sigstore_pb.Signature.read(sealed / "manifest.sig"))
    [rd] = list(manifest.resource_descriptors())
    assert rd.digest.digest_hex == hashlib.sha256((sealed / "manifest.json").read_bytes()).hexdigest()


def test_key_id_matches_the_hint_model_signing_records(sealed, keys):
    sig = json.loads((sealed / "manifest.sig").read_text())
    assert bm.verify(str(sealed), keys["pub"])["key_id"] == sig["verificationMaterial"]["publicKey"]["hint"]


def test_reseal_with_nothing_changed_keeps_manifest_and_signature(sealed, keys):
    before = {n: (sealed / n).read_bytes() for n in ("manifest.json", "manifest.sig")}
    out = bm.seal(str(sealed), dict(CONTENTS), keys["priv"], created="2027-01-01T00:00:00Z")
    assert out["changed"] is False
    assert out["manifest"]["created"] == CREATED
    assert {n: (sealed / n).read_bytes() for n in before} == before


def test_reseal_after_a_change_signs_again_and_reports_the_files(sealed, keys):
    (sealed / "images" / "model-server.tar").write_bytes(b"new image")
    (sealed / "wheelhouse" / "extra-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (sealed / "empty.txt").unlink()
    out = bm.seal(str(sealed), CONTENTS, keys["priv"], created="2027-01-01T00:00:00Z")
    assert out["changed"] is True
    assert bm.changes(out["before"], out["manifest"]) == {
        "added": ["wheelhouse/extra-1.0-py3-none-any.whl"], "changed": ["images/model-server.tar"],
        "removed": ["empty.txt"]}
    assert bm.verify(str(sealed), keys["pub"])["manifest"]["created"] == "2027-01-01T00:00:00Z"


def test_reseal_with_other_contents_changes(sealed, keys):
    out = bm.seal(str(sealed), dict(CONTENTS, target="debian-13"), keys["priv"], created=CREATED)
    assert out["changed"] is True
    assert bm.verify(str(sealed), keys["pub"])["manifest"]["contents"]["target"] == "debian-13"


def test_seal_check_mode_writes_nothing(bundle, sealed, keys):
    before = {n: (sealed / n).read_bytes() for n in ("manifest.json", "manifest.sig")}
    (sealed / "empty.txt").write_bytes(b"now with bytes")
    out = bm.seal(str(sealed), CONTENTS, keys["priv"], created="2027-01-01T00:00:00Z", check_mode=True)
    assert out["changed"] is True
    assert {n: (sealed / n).read_bytes() for n in before} == before
    fresh = bundle.parent / "fresh"
    fresh.mkdir()
    (fresh / "a").write_bytes(b"a")
    assert bm.seal(str(fresh), {}, keys["priv"], created=CREATED, check_mode=True)["changed"] is True
    assert sorted(os.listdir(fresh)) == ["a"]


def test_seal_with_another_key_signs_again(sealed, keys):
    out = bm.seal(str(sealed), CONTENTS, keys["other_priv"], created=CREATED)
    assert out["changed"] is True and out["before"] is None
    bm.verify(str(sealed), keys["other_pub"])
    with refused("manifest.sig does not verify"):
        bm.verify(str(sealed), keys["pub"])


def test_encrypted_key_needs_its_passphrase_and_it_is_never_in_messages(bundle, keys):
    with refused("cannot load the private key") as err:
        bm.seal(str(bundle), CONTENTS, keys["enc_priv"], password=b"wrong-passphrase", created=CREATED)
    assert "wrong-passphrase" not in str(err.value)
    assert not (bundle / "manifest.json").exists()
    out = bm.seal(str(bundle), CONTENTS, keys["enc_priv"], password=b"s3cret-passphrase", created=CREATED)
    assert out["changed"] is True
    bm.verify(str(bundle), keys["enc_pub"])


@pytest.mark.parametrize("rel", sorted(FILES))
def test_tampered_byte_is_refused_naming_the_file(sealed, keys, rel):
    path = sealed / rel
    data = bytearray(path.read_bytes())
    if not data:
        path.write_bytes(b"x")
        match = "%s was tampered with or damaged: it has 1 bytes" % rel
    else:
        data[len(data) // 2] ^= 0x01  # same size, one bit: only the digest can tell
        path.write_bytes(bytes(data))
        match = "%s was tampered with or damaged: its sha256" % rel
    with refused(match):
        bm.verify(str(sealed), keys["pub"])


def test_missing_file_is_refused_naming_it(sealed, keys):
    (sealed / "wheelhouse" / "vllm-0.6.3-py3-none-any.whl").unlink()
    with refused("wheelhouse/vllm-0.6.3-py3-none-any.whl is missing from the bundle"):
        bm.verify(str(sealed), keys["pub"])


def test_extra_file_is_refused_naming_it(sealed, keys):
    (sealed / "wheelhouse" / "evil-6.6.6-py3-none-any.whl").write_bytes(b"import os")
    with refused("wheelhouse/evil-6.6.6-py3-none-any.whl is in the bundle but not in its signed manifest "
                 "(1 such file"):
        bm.verify(str(sealed), keys["pub"])


def test_leftover_temp_file_is_an_extra_file(sealed, keys):
    (sealed / ".manifest.json.abc123.tmp").write_bytes(b"{}")
    with refused(".manifest.json.abc123.tmp is in the bundle but not"):
        bm.verify(str(sealed), keys["pub"])


def test_wrong_key_is_refused(sealed, keys):
    with refused("manifest.sig does not verify with the public key %s" % keys["other_pub"]):
        bm.verify(str(sealed), keys["other_pub"])


def test_public_key_that_is_not_a_key_is_refused(sealed, tmp_path):
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key\n")
    with refused("cannot load the public key"):
        bm.verify(str(sealed), str(bad))


@pytest.mark.parametrize("where", ["file", "dir"])
def test_symlink_escaping_the_bundle_is_refused(sealed, keys, tmp_path, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not for the fleet")
    # a link in place of a listed file, pointing at identical bytes outside: still refused
    target = sealed / "images" / "model-server.tar"
    (outside / "model-server.tar").write_bytes(target.read_bytes())
    if where == "file":
        target.unlink()
        target.symlink_to(outside / "model-server.tar")
        name = "images/model-server.tar"
    else:
        (sealed / "wheelhouse" / "linked").symlink_to(outside, target_is_directory=True)
        name = "wheelhouse/linked"
    with refused("%s is a symbolic link" % name):
        bm.verify(str(sealed), keys["pub"])
    with refused("%s is a symbolic link" % name):
        bm.seal(str(sealed), CONTENTS, keys["priv"], created=CREATED)


def test_seal_refuses_a_symlink_and_writes_nothing(bundle, keys, tmp_path):
    (bundle / "link").symlink_to("/etc/passwd")
    with refused("link is a symbolic link"):
        bm.seal(str(bundle), CONTENTS, keys["priv"], created=CREATED)
    assert not (bundle / "manifest.json").exists() and not (bundle / "manifest.sig").exists()


def test_manifest_as_symlink_is_refused(sealed, keys, tmp_path):
    copy = tmp_path / "manifest-copy.json"
    copy.write_bytes((sealed / "manifest.json").read_bytes())
    (sealed / "manifest.json").unlink()
    (sealed / "manifest.json").symlink_to(copy)
    with refused("manifest.json is a symbolic link, not a plain file"):
        bm.verify(str(sealed), keys["pub"])


@pytest.mark.parametrize("cut", [1, 100, 0.5])
def test_truncated_manifest_is_refused(sealed, keys, cut):
    path = sealed / "manifest.json"
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)] if isinstance(cut, float) else data[:-cut])
    with refused("manifest.json was changed after it was signed (or is truncated)"):
        bm.verify(str(sealed), keys["pub"])


def test_truncated_signature_is_refused(sealed, keys):
    path = sealed / "manifest.sig"
    path.write_bytes(path.read_bytes()[:200])
    with refused("manifest.sig is not a readable signature"):
        bm.verify(str(sealed), keys["pub"])


@pytest.mark.parametrize("name", ["manifest.json", "manifest.sig"])
def test_missing_manifest_or_signature_is_refused(sealed, keys, name):
    (sealed / name).unlink()
    with refused("%s is missing" % name):
        bm.verify(str(sealed), keys["pub"])


def test_edited_manifest_is_refused_before_it_is_parsed(sealed, keys):
    """A manifest re-listing a planted file (the attacker's own hash) does not verify with the signature."""
    doc = json.loads((sealed / "manifest.json").read_bytes())
    (sealed / "images" / "model-server.tar").write_bytes(b"planted")
    doc["files"]["images/model-server.tar"] = {"size": 7, "sha256": hashlib.sha256(b"planted").hexdigest()}
    (sealed / "manifest.json").write_bytes(bm.dump(doc))
    with refused("manifest.json was changed after it was signed"):
        bm.verify(str(sealed), keys["pub"])


def test_model_signature_is_not_taken_for_a_bundle_signature(sealed, keys, repo_root):
    """scripts/model-sign over the same directory, same key: a valid signature, but of a model."""
    (sealed / "manifest.sig").unlink()
    (sealed / "manifest.json").rename(sealed.parent / "manifest.json")
    subprocess.run([sys.executable, str(repo_root / "scripts" / "model-sign"), "sign", str(sealed), "--private-key",
                    keys["priv"], "--signature", str(sealed.parent / "model.sig"), "--model-id", "org/model",
                    "--revision", "r1"], check=True, capture_output=True)
    (sealed.parent / "manifest.json").rename(sealed / "manifest.json")
    (sealed.parent / "model.sig").rename(sealed / "manifest.sig")
    with refused("not of a bundle"):
        bm.verify(str(sealed), keys["pub"])


@pytest.mark.parametrize("entry, match", [
    ({"path": "../escape"}, "not a plain relative path"),
    ({"path": "/etc/passwd"}, "not a plain relative path"),
    ({"path": "a//b"}, "not a plain relative path"),
    ({"path": "manifest.sig"}, "the bundle's own manifest or signature"),
    ({"size": -1}, "no valid size and sha256"),
    ({"size": True}, "no valid size and sha256"),
    ({"sha256": "ABC"}, "no valid size and sha256"),
])
def test_parse_refuses_bad_entries(entry, match):
    good = {"size": 1, "sha256": "0" * 64}
    path = entry.pop("path", "ok")
    doc = bm.new_manifest({}, {}, CREATED)
    doc["files"][path] = dict(good, **entry)
    with refused(match):
        bm.parse(bm.dump(doc))


@pytest.mark.parametrize("data, match", [
    (b"{", "not valid JSON"),
    (b"[]", "not a bundle manifest"),
    (json.dumps({"format": "other"}).encode(), "not a bundle manifest"),
    (json.dumps({"format": bm.FORMAT, "kind": "delta", "files": {}, "contents": {}}).encode(),
     "of kind 'delta'; this version knows full and update"),
    (json.dumps({"format": bm.FORMAT, "kind": "update", "files": {}, "contents": {}}).encode(), "without a valid base"),
    (json.dumps({"format": bm.FORMAT, "kind": "full", "contents": {},
                 "files": {"a": {"size": 1, "sha256": "0" * 64, "in": "base"}}}).encode(), "only an update's files"),
    (json.dumps({"format": bm.FORMAT, "kind": "full", "files": [], "contents": {}}).encode(), "no file table"),
    (json.dumps({"format": bm.FORMAT, "kind": "full", "files": {}}).encode(), "no contents"),
])
def test_parse_refuses_bad_documents(data, match):
    with refused(match):
        bm.parse(data)


def test_id_depends_on_content_only():
    files = {"a": {"size": 1, "sha256": "1" * 64}}
    one = bm.new_manifest(files, {"v": 1}, CREATED)
    assert one["id"] == bm.new_manifest(files, {"v": 1}, "2030-01-01T00:00:00Z")["id"]
    assert one["id"] != bm.new_manifest(files, {"v": 2}, CREATED)["id"]
    assert one["id"] != bm.new_manifest({"a": {"size": 1, "sha256": "2" * 64}}, {"v": 1}, CREATED)["id"]


def _m(files):
    return bm.new_manifest({p: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()},
                           {}, CREATED)


def test_update_diff_ships_only_what_changed():
    base = _m({"images/model-server.tar": b"old image", "images/registry.tar": b"registry",
               "apt/pool/main/a.deb": b"a", "apt/pool/main/b.deb": b"b", "apt/dists/Release": b"r1",
               "apt/dists/Packages": b"p", "wheelhouse/x.whl": b"x", "wheelhouse/y.whl": b"y",
               "models/org/m/r1/w.bin": b"w1", "models/org/m/r1/config.json": b"c"})
    full = _m({"images/model-server.tar": b"new image", "images/registry.tar": b"registry",
               "apt/pool/main/a.deb": b"a", "apt/pool/main/b.deb": b"b", "apt/pool/main/c.deb": b"c",
               "apt/dists/Release": b"r2", "apt/dists/Packages": b"p", "wheelhouse/x.whl": b"x",
               "wheelhouse/y.whl": b"y", "models/org/m/r2/w.bin": b"w2", "models/org/m/r2/config.json": b"c"})
    files, ref = bm.diff(full, base, "f" * 64)
    assert ref == {"id": base["id"], "manifest_sha256": "f" * 64}
    shipped = sorted(p for p, e in files.items() if e.get("in") != "base")
    assert shipped == [
        "apt/dists/Packages", "apt/dists/Release",  # the apt indices ship together when one changed
        "apt/pool/main/c.deb",  # a new package on its own; the unchanged ones stay in the base
        "images/model-server.tar",  # a changed image
        "models/org/m/r2/config.json", "models/org/m/r2/w.bin",  # a new model revision ships whole
    ]
    assert files["wheelhouse/x.whl"] == dict(full["files"]["wheelhouse/x.whl"], **{"in": "base"})
    assert set(files) == set(full["files"])


def test_update_diff_ships_a_component_whole_when_a_file_left_it():
    base = _m({"wheelhouse/x.whl": b"x", "wheelhouse/gone.whl": b"g"})
    full = _m({"wheelhouse/x.whl": b"x"})
    files, _ref = bm.diff(full, base, "0" * 64)
    assert files == {"wheelhouse/x.whl": full["files"]["wheelhouse/x.whl"]}


def test_update_diff_against_the_same_manifest_ships_nothing():
    base = _m({"images/a.tar": b"a", "wheelhouse/x.whl": b"x"})
    files, _ref = bm.diff(base, base, "0" * 64)
    assert all(e["in"] == "base" for e in files.values())


@pytest.mark.parametrize("path, component", [
    ("apt/dists/bookworm/Release", "apt"),
    ("apt/bundle-repo.gpg", "apt"),
    ("apt/pool/main/d/docker.deb", None),
    ("wheelhouse/x.whl", "wheelhouse"),
    ("models/org/m/r1/w.bin", "model:org/m"),
    ("models/readme", None),
    ("images/a.tar", None),
])
def test_component_of(path, component):
    assert bm.component_of(path) == component


def test_changes_against_nothing_adds_everything():
    m = _m({"a": b"a", "b/c": b"c"})
    assert bm.changes(None, m) == {"added": ["a", "b/c"], "changed": [], "removed": []}


def test_bundle_signature_is_not_taken_for_a_model_signature(sealed, keys):
    """model_fetch's check refuses a bundle's signature: it names no model and revision."""
    from ansible_collections.autoglm.fleet.plugins.module_utils import _model_manifest as mm

    files, _serialization, binding = mm.verify_signature(str(sealed / "manifest.sig"), keys["pub"])
    assert [f["path"] for f in files] == ["manifest.json"] and binding is None
    with pytest.raises(mm.ManifestError, match="does not say which model and revision it is for"):
        mm.check_binding(binding, "org/model", "r1", "manifest.sig")


def test_new_manifest_beside_the_old_signature_is_refused(sealed, keys):
    """The window between seal's two renames (or a half-copied bundle): the new manifest, the old signature."""
    old_sig = (sealed / "manifest.sig").read_bytes()
    (sealed / "empty.txt").write_bytes(b"changed")
    bm.seal(str(sealed), CONTENTS, keys["priv"], created="2027-01-01T00:00:00Z")
    (sealed / "manifest.sig").write_bytes(old_sig)
    with refused("manifest.json was changed after it was signed"):
        bm.verify(str(sealed), keys["pub"])
