"""Run the model_fetch module the way Ansible does (a JSON args file) against a loopback mirror:
check mode, real run, repeat; compare what it returned with what is on disk."""

import hashlib
import json
import os

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils._model_manifest import make_unsigned


@pytest.fixture
def served(tmp_path, mirror):
    src = tmp_path / "src"
    src.mkdir()
    files = {"a.safetensors": os.urandom(200 * 1024), "config.json": b'{"x": 1}'}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    (tmp_path / "manifest.json").write_text(json.dumps(make_unsigned(str(src))))
    return mirror(src), files, str(tmp_path / "manifest.json")


def test_check_real_repeat(tmp_path, served, run_module):
    srv, files, manifest = served
    dest = tmp_path / "dest"
    args = {"dest": str(dest), "sources": [{"url": srv.url}], "require_signature": False, "manifest": manifest,
            "chunk_size": 65536, "token": "s3cret-token"}
    check = run_module("model_fetch", args, check=True)
    assert check["changed"] is True
    assert {f["status"] for f in check["files"]} == {"would_fetch"}
    assert check["totals"]["bytes"] == sum(len(d) for d in files.values())
    assert not dest.exists()

    real = run_module("model_fetch", args)
    assert real["changed"] is True and real["signed"] is False
    assert real["model_path"] == str(dest) and "uid" not in real
    assert "UNSIGNED manifest" in json.dumps(real.get("warnings"))  # ansible-core 2.19 wraps warnings
    for f in real["files"]:
        assert f["status"] == "fetched" and f["source"] == srv.url
        assert (dest / f["path"]).read_bytes() == files[f["path"]]
        assert os.path.getsize(dest / f["path"]) == f["size"] == f["bytes"]
    assert "s3cret-token" not in json.dumps(real)

    again = run_module("model_fetch", args)
    assert again["changed"] is False
    assert {f["status"] for f in again["files"]} == {"present"}
    check_again = run_module("model_fetch", args, check=True)
    assert check_again["changed"] is False and check_again["totals"]["bytes"] == 0


def test_signature_required_by_default(tmp_path, served, run_module):
    srv = served[0]
    res = run_module("model_fetch", {"dest": str(tmp_path / "d"), "sources": [{"url": srv.url}]})
    assert res["failed"] is True
    assert "public_key" in res["msg"] and "require_signature: false" in res["msg"]
    assert "Traceback" not in res["msg"]


def test_bad_parameter_message(tmp_path, served, run_module):
    srv, _data, manifest = served
    res = run_module("model_fetch", {"dest": str(tmp_path / "d"), "sources": [{"url": srv.url}], "connections": 0,
                                     "require_signature": False, "manifest": manifest})
    assert res["failed"] is True and "connections must be a positive integer" in res["msg"]


def test_persistent_fault_reports_file_and_source(tmp_path, served, run_module):
    srv, _data, manifest = served
    srv.faults.html.add("a.safetensors")
    res = run_module("model_fetch", {"dest": str(tmp_path / "d"), "sources": [{"url": srv.url}], "retries": 1,
                                     "require_signature": False, "manifest": manifest})
    assert res["failed"] is True
    assert "a.safetensors" in res["msg"] and srv.url in res["msg"] and "HTML" in res["msg"]


def test_invalid_resume_state_is_a_warning_not_a_failure(tmp_path, served, run_module):
    srv, files, manifest = served
    dest = tmp_path / "dest"
    (dest / ".partial").mkdir(parents=True)
    (dest / ".partial" / "a.safetensors.part").write_bytes(b"\0" * len(files["a.safetensors"]))
    data = files["a.safetensors"]
    state = {"version": 1, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "chunk_size": 65536,
             "done": ["x"]}
    (dest / ".partial" / "a.safetensors.state").write_text(json.dumps(state))
    res = run_module("model_fetch", {"dest": str(dest), "sources": [{"url": srv.url}], "require_signature": False,
                                     "manifest": manifest, "chunk_size": 65536})
    assert res.get("failed") is not True, res.get("msg")
    assert (dest / "a.safetensors").read_bytes() == files["a.safetensors"]
    warnings = json.dumps(res.get("warnings"))
    assert "a.safetensors.state" in warnings and "discarded" in warnings


def test_verified_record_through_the_module(tmp_path, served, run_module):
    srv, _files, manifest = served
    dest, record = tmp_path / "dest", tmp_path / "state" / "weights.verified.json"
    args = {"dest": str(dest), "sources": [{"url": srv.url}], "require_signature": False, "manifest": manifest,
            "verified_record": str(record)}
    assert run_module("model_fetch", args)["verified"] == "hashed"
    again = run_module("model_fetch", args)
    assert again["changed"] is False and again["verified"] == "record"
    assert "verified" not in run_module("model_fetch", args, check=True)


def test_verified_record_inside_dest_is_refused(tmp_path, served, run_module):
    srv, _files, manifest = served
    dest = tmp_path / "dest"
    res = run_module("model_fetch", {"dest": str(dest), "sources": [{"url": srv.url}], "require_signature": False,
                                     "manifest": manifest, "verified_record": str(dest / "sub" / "r.json")})
    assert res["failed"] is True and "must be outside dest" in res["msg"]
    assert not dest.exists()
