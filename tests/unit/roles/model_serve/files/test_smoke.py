"""roles/model_serve/files/smoke.py against a small real OpenAI-style HTTP server on loopback, run as the role runs
it (`python -c <program> URL PROMPT MAX_TOKENS TIMEOUT`, the key in AUTOGLM_SMOKE_KEY)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PROGRAM = (Path(__file__).resolve().parents[5] / "roles" / "model_serve" / "files" / "smoke.py").read_text()


class Server(ThreadingHTTPServer):
    """Answers /v1/models and /v1/completions as the model server does, or as told by `mode`."""

    def __init__(self, mode="ok", key=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = mode
        self.key = key
        self.requests = []

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self, body):
        server = self.server
        server.requests.append({"method": self.command, "path": self.path, "body": body,
                                "authorization": self.headers.get("Authorization")})
        if server.key and self.headers.get("Authorization") != "Bearer " + server.key:
            return self.answer(401, {"error": {"message": "invalid API key"}})
        if self.path == "/v1/models":
            return self.answer(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})
        if self.path != "/v1/completions":
            return self.answer(404, {"error": {"message": "no route"}})
        if server.mode == "no_choices":
            return self.answer(200, {"id": "cmpl-1", "choices": []})
        if server.mode == "not_json":
            return self.answer(200, b"<html>proxy error</html>")
        if server.mode == "error":
            return self.answer(500, {"error": {"message": "CUDA out of memory"}})
        return self.answer(200, {"id": "cmpl-1", "object": "text_completion", "model": body["model"],
                                 "choices": [{"index": 0, "text": " world", "finish_reason": "length"}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": body["max_tokens"],
                                           "total_tokens": 1 + body["max_tokens"]}})

    def do_GET(self):
        self.handle_any(None)

    def do_POST(self):
        self.handle_any(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))


@pytest.fixture
def serve(running):
    return lambda mode="ok", key=None: running(Server(mode, key))


def smoke(*args, key=None):
    env = {k: v for k, v in os.environ.items() if k != "AUTOGLM_SMOKE_KEY"}
    if key is not None:
        env["AUTOGLM_SMOKE_KEY"] = key
    return subprocess.run([sys.executable, "-c", PROGRAM, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_one_completion_is_timed_and_reported(serve):
    server = serve()
    run = smoke(server.url, "Hello", 4, 10)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["model"] == "tiny" and out["text"] == " world"
    assert out["usage"] == {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}
    assert 0 <= out["latency_s"] < 10
    models, completion = server.requests
    assert (models["method"], models["path"]) == ("GET", "/v1/models")
    assert (completion["method"], completion["path"]) == ("POST", "/v1/completions")
    assert completion["body"] == {"model": "tiny", "prompt": "Hello", "max_tokens": 4, "temperature": 0}
    assert completion["authorization"] is None


def test_the_key_goes_in_the_header_from_the_environment(serve):
    server = serve(key="s3cret-key")
    run = smoke(server.url + "/", "Hi", 1, 10, key="s3cret-key")
    assert run.returncode == 0, run.stderr
    assert {r["authorization"] for r in server.requests} == {"Bearer s3cret-key"}
    assert {r["path"] for r in server.requests} == {"/v1/models", "/v1/completions"}  # no double slash


def test_a_missing_or_wrong_key_fails_naming_the_url(serve):
    server = serve(key="s3cret-key")
    for key in (None, "wrong"):
        run = smoke(server.url, "Hi", 1, 10, key=key)
        assert run.returncode == 1
        assert run.stderr.strip() == "smoke test against %s failed: HTTP Error 401: Unauthorized" % server.url


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("no_choices", 'no completion in the answer: {"id": "cmpl-1", "choices": []}'),
        ("not_json", "failed: Expecting value"),
        ("error", "failed: HTTP Error 500: Internal Server Error"),
    ],
)
def test_a_bad_answer_fails_with_what_came_back(serve, mode, message):
    server = serve(mode)
    run = smoke(server.url, "Hi", 1, 10)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("smoke test against %s" % server.url) and message in run.stderr, run.stderr


def test_no_server_fails_with_the_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        run = smoke("http://127.0.0.1:%d" % port, "Hi", 1, 5)
    assert run.returncode == 1
    assert "smoke test against http://127.0.0.1:%d failed:" % port in run.stderr
    assert "Connection refused" in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1:1", "Hi", "1"], "usage: smoke.py BASE_URL PROMPT MAX_TOKENS TIMEOUT"),
        (["http://127.0.0.1:1", "Hi", "many", "5"], "invalid literal for int() with base 10: 'many'"),
        (["file:///etc/passwd", "Hi", "1", "5"], "'file:///etc/passwd' is not an http(s) URL"),
    ],
)
def test_bad_arguments_fail_before_any_request(args, message):
    run = smoke(*args)
    assert run.returncode == 1 and message in run.stderr, run.stderr
