"""The runtime_state module, run as Ansible runs it (a script with an args file), against real state files and a real
HTTP server on loopback."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
COLLECTIONS = ROOT / ".cache" / "collections"
MODULE = "ansible_collections.autoglm.fleet.plugins.modules.runtime_state"
SERVE = {"current": {"digest": "sha256:" + "b" * 64, "weights_revision": "r2"}, "live": "green"}


def run_module(tmp_path, args):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60, check=False)
    return proc.returncode, json.loads(proc.stdout)


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health/ready" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def ready_url():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Ready)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/health/ready" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("check_mode", [False, True])
def test_state_venv_and_readiness(tmp_path, ready_url, check_mode):
    state = tmp_path / "state"
    state.mkdir()
    (state / "model_serve.json").write_text(json.dumps(SERVE))
    (state / "drain.json").write_text("{half")
    before = sorted(p.name for p in state.iterdir())
    rc, result = run_module(tmp_path, {"state_dir": str(state), "runtime_python": sys.executable,
                                       "ready_url": ready_url, "_ansible_check_mode": check_mode})
    assert rc == 0, result
    assert result["changed"] is False and "failed" not in result
    assert result["state"] == {"model_serve": SERVE}
    assert list(result["state_errors"]) == ["drain"] and "is not JSON" in result["state_errors"]["drain"]
    assert result["runtime_python_present"] is True
    assert result["ready"] == {"checked": True, "url": ready_url, "status": 200, "ok": True, "error": None}
    assert sorted(p.name for p in state.iterdir()) == before


def test_a_host_without_the_runtime(tmp_path):
    rc, result = run_module(tmp_path, {"state_dir": str(tmp_path / "none"),
                                       "runtime_python": str(tmp_path / "venv" / "bin" / "python")})
    assert rc == 0, result
    assert (result["state"], result["state_errors"], result["runtime_python_present"]) == ({}, {}, False)
    assert result["ready"]["checked"] is False and result["ready"]["status"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"state_dir": "state"}, "state_dir must be an absolute path"),
        ({"state_dir": "/srv", "state_files": ["../etc/shadow"]}, "plain names"),
        ({"state_dir": "/srv", "ready_url": "file:///etc/shadow"}, "ready_url must be an http"),
    ],
)
def test_bad_input_is_refused_with_the_option_named(tmp_path, args, message):
    rc, result = run_module(tmp_path, args)
    assert rc == 1 and result["failed"] is True and message in result["msg"]
