"""Run the model_fetch module the way Ansible does (a JSON args file) against a loopback mirror:
check mode, real run, repeat; compare what it returned with what is on disk."""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "fixtures_fetch"))
from ansible_collections.autoglm.fleet.plugins.module_utils._model_manifest import make_unsigned
from fault_server import FaultServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
MODULE = os.path.join(REPO, "plugins", "modules", "model_fetch.py")


def run_module(tmp_path, args, check=False):
    args = dict(args, _ansible_check_mode=check, _ansible_tmpdir=str(tmp_path))
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, ".cache", "collections"))
    proc = subprocess.run([sys.executable, MODULE, str(path)], capture_output=True, text=True, env=env, check=False)
    return json.loads(proc.stdout)


@pytest.fixture
def mirror(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = {"a.safetensors": os.urandom(200 * 1024), "config.json": b'{"x": 1}'}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    (tmp_path / "manifest.json").write_text(json.dumps(make_unsigned(str(src))))
    with FaultServer(str(src)) as srv:
        yield srv, files, str(tmp_path / "manifest.json")


def test_check_real_repeat(tmp_path, mirror):
    srv, files, manifest = mirror
    dest = tmp_path / "dest"
    args = {"dest": str(dest), "sources": [{"url": srv.url}], "require_signature": False, "manifest": manifest,
            "chunk_size": 65536, "token": "s3cret-token"}
    check = run_module(tmp_path, args, check=True)
    assert check["changed"] is True
    assert {f["status"] for f in check["files"]} == {"would_fetch"}
    assert check["totals"]["bytes"] == sum(len(d) for d in files.values())
    assert not dest.exists()

    real = run_module(tmp_path, args)
    assert real["changed"] is True and real["signed"] is False
    assert real["model_path"] == str(dest) and "uid" not in real
    assert "UNSIGNED manifest" in json.dumps(real.get("warnings"))  # ansible-core 2.19 wraps warnings
    for f in real["files"]:
        assert f["status"] == "fetched" and f["source"] == srv.url
        assert (dest / f["path"]).read_bytes() == files[f["path"]]
        assert os.path.getsize(dest / f["path"]) == f["size"] == f["bytes"]
    assert "s3cret-token" not in json.dumps(real)

    again = run_module(tmp_path, args)
    assert again["changed"] is False
    assert {f["status"] for f in again["files"]} == {"present"}
    check_again = run_module(tmp_path, args, check=True)
    assert check_again["changed"] is False and check_again["totals"]["bytes"] == 0


def test_signature_required_by_default(tmp_path, mirror):
    srv = mirror[0]
    res = run_module(tmp_path, {"dest": str(tmp_path / "d"), "sources": [{"url": srv.url}]})
    assert res["failed"] is True
    assert "public_key" in res["msg"] and "require_signature: false" in res["msg"]
    assert "Traceback" not in res["msg"]


def test_bad_parameter_message(tmp_path, mirror):
    srv, _data, manifest = mirror
    res = run_module(tmp_path, {"dest": str(tmp_path / "d"), "sources": [{"url": srv.url}], "connections": 0,
                                "require_signature": False, "manifest": manifest})
    assert res["failed"] is True and "connections must be a positive integer" in res["msg"]


def test_persistent_fault_reports_file_and_source(tmp_path, mirror):
    srv, _data, manifest = mirror
    srv.faults.html.add("a.safetensors")
    res = run_module(tmp_path, {"dest": str(tmp_path / "d"), "sources": [{"url": srv.url}], "retries": 1,
                                "require_signature": False, "manifest": manifest})
    assert res["failed"] is True
    assert "a.safetensors" in res["msg"] and srv.url in res["msg"] and "HTML" in res["msg"]
