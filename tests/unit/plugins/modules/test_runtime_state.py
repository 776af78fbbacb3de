"""The runtime_state module, run as Ansible runs it (a script with an args file), against real state files and a real
HTTP server on loopback."""

from __future__ import annotations

import http.server
import json
import sys
import threading

import pytest
from support.module_run import run_module as support_run_module

SERVE = {"current": {"digest": "sha256:" + "b" * 64, "weights_revision": "r2"}, "live": "green"}


def run_module(tmp_path, args, check=False):
    return support_run_module("runtime_state", tmp_path, args, check=check)


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
                                       "ready_url": ready_url}, check=check_mode)
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
