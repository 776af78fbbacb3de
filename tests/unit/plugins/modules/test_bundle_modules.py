"""Run bundle_seal and bundle_verify the way Ansible does (a JSON args file, a fresh Python) on a real bundle
directory signed with a real, encrypted EC key: check mode, real run, repeat; tampering refused by name."""

import hashlib
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PASSPHRASE = "vault-held-passphrase-7f3a"
CONTENTS = {"target": "debian-12", "images": [{"name": "model-server", "id": "sha256:" + "a" * 64}]}


@pytest.fixture
def setup(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    priv, pub = tmp_path / "op.key", tmp_path / "op.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    root = tmp_path / "bundle"
    (root / "images").mkdir(parents=True)
    (root / "wheelhouse").mkdir()
    (root / "images" / "model-server.tar").write_bytes(os.urandom(40000))
    (root / "wheelhouse" / "x-1.0-py3-none-any.whl").write_bytes(os.urandom(1000))
    seal_args = {"path": str(root), "contents": CONTENTS, "private_key": str(priv),
                 "private_key_passphrase": PASSPHRASE}
    return root, seal_args, {"path": str(root), "public_key": str(pub)}


def test_seal_check_real_repeat_then_verify(setup, run_module):
    root, seal_args, verify_args = setup
    check = run_module("bundle_seal", dict(seal_args, _ansible_diff=True), check=True)
    assert check["changed"] is True, check
    assert check["files"]["added"] == ["images/model-server.tar", "wheelhouse/x-1.0-py3-none-any.whl"]
    assert check["diff"]["before"] == "" and '"images/model-server.tar"' in check["diff"]["after"]
    assert sorted(os.listdir(root)) == ["images", "wheelhouse"]

    real = run_module("bundle_seal", seal_args)
    assert real["changed"] is True and "diff" not in real
    data = (root / "manifest.json").read_bytes()
    assert real["manifest_sha256"] == hashlib.sha256(data).hexdigest()
    assert real["manifest"]["id"] == check["manifest"]["id"] == json.loads(data)["id"]
    assert real["manifest"]["totals"] == {"files": 2, "bytes": 41000}
    sig = json.loads((root / "manifest.sig").read_text())
    assert real["key_id"] == sig["verificationMaterial"]["publicKey"]["hint"]

    again = run_module("bundle_seal", dict(seal_args, _ansible_diff=True))
    assert again["changed"] is False and "diff" not in again
    assert again["files"] == {"added": [], "changed": [], "removed": []}
    assert (root / "manifest.json").read_bytes() == data

    verified = run_module("bundle_verify", verify_args)
    assert verified.get("failed") is not True, verified
    assert verified["changed"] is False
    assert verified["id"] == real["manifest"]["id"] and verified["kind"] == "full"
    assert verified["manifest_sha256"] == real["manifest_sha256"] and verified["key_id"] == real["key_id"]
    assert verified["contents"] == CONTENTS and verified["totals"] == {"files": 2, "bytes": 41000}
    assert run_module("bundle_verify", verify_args, check=True)["id"] == verified["id"]

    for out in (check, real, again, verified):
        assert PASSPHRASE not in json.dumps(out)


def test_seal_diff_after_a_change(setup, run_module):
    root, seal_args, _verify = setup
    run_module("bundle_seal", seal_args)
    before = (root / "manifest.json").read_text()
    (root / "wheelhouse" / "x-1.0-py3-none-any.whl").write_bytes(b"rebuilt")
    out = run_module("bundle_seal", dict(seal_args, _ansible_diff=True))
    assert out["changed"] is True
    assert out["files"]["changed"] == ["wheelhouse/x-1.0-py3-none-any.whl"]
    assert out["diff"]["before"] == before and out["diff"]["after"] == (root / "manifest.json").read_text()


def test_verify_refuses_tampered_file_by_name(setup, run_module):
    root, seal_args, verify_args = setup
    run_module("bundle_seal", seal_args)
    path = root / "images" / "model-server.tar"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    out = run_module("bundle_verify", verify_args)
    assert out["failed"] is True
    assert "images/model-server.tar was tampered with or damaged" in out["msg"]


def test_wrong_passphrase_fails_without_echoing_it(setup, run_module):
    root, seal_args, _verify = setup
    out = run_module("bundle_seal", dict(seal_args, private_key_passphrase="not-the-" + PASSPHRASE))
    assert out["failed"] is True and "cannot load the private key" in out["msg"]
    assert PASSPHRASE not in json.dumps(out)
    assert not (root / "manifest.json").exists()


def test_verify_of_an_unsealed_directory_fails_clearly(setup, run_module):
    _root, _seal, verify_args = setup
    out = run_module("bundle_verify", verify_args)
    assert out["failed"] is True and "manifest.json is missing" in out["msg"]


def test_update_then_apply_check_real_repeat(setup, run_module, tmp_path):
    """bundle_update makes the update from the sealed bundle (the site's current) to the next full bundle, and
    bundle_apply puts it onto the current one: check mode first, then real, then again with nothing to do."""
    root, seal_args, verify_args = setup
    run_module("bundle_seal", seal_args)
    nxt = tmp_path / "next"
    (nxt / "images").mkdir(parents=True)
    (nxt / "wheelhouse").mkdir()
    (nxt / "images" / "model-server.tar").write_bytes(os.urandom(40000))
    wheel = "x-1.0-py3-none-any.whl"
    (nxt / "wheelhouse" / wheel).write_bytes((root / "wheelhouse" / wheel).read_bytes())
    run_module("bundle_seal", dict(seal_args, path=str(nxt)))
    update = tmp_path / "update"
    make_args = {"full": str(nxt), "base": str(root), "dest": str(update), "private_key": seal_args["private_key"],
                 "private_key_passphrase": PASSPHRASE}
    check = run_module("bundle_update", make_args, check=True)
    assert check["changed"] is True and not update.exists()
    made = run_module("bundle_update", make_args)
    assert made["changed"] is True, made
    assert made["shipped"] == {"files": 1, "bytes": 40000} and made["full"] == {"files": 2, "bytes": 41000}
    assert made["base"]["manifest_sha256"] == hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()
    assert sorted(p.name for p in update.rglob("*") if p.is_file()) == ["manifest.json", "manifest.sig",
                                                                        "model-server.tar"]
    assert run_module("bundle_update", make_args)["changed"] is False

    site = tmp_path / "site"
    apply_args = {"update": str(update), "base": str(root), "dest": str(site),
                  "public_key": verify_args["public_key"]}
    planned = run_module("bundle_apply", apply_args, check=True)
    assert planned["changed"] is True and not site.exists()
    applied = run_module("bundle_apply", apply_args)
    assert applied["changed"] is True, applied
    assert applied["path"] == str(site) and applied["totals"] == {"files": 2, "bytes": 41000}
    assert (site / "images" / "model-server.tar").read_bytes() == (nxt / "images" / "model-server.tar").read_bytes()
    assert run_module("bundle_verify", dict(verify_args, path=str(site)))["kind"] == "update"
    assert run_module("bundle_apply", apply_args)["changed"] is False
    for out in (check, made, planned, applied):
        assert PASSPHRASE not in json.dumps(out)

    (update / "images" / "model-server.tar").write_bytes(os.urandom(40000))
    refused = run_module("bundle_apply", dict(apply_args, dest=str(tmp_path / "site2")))
    assert refused["failed"] is True
    assert "images/model-server.tar was tampered with or damaged" in refused["msg"]
    assert not (tmp_path / "site2").exists()
