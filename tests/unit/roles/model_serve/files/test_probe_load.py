"""roles/model_serve/files/probe_load.py against a small real OpenAI-style HTTP server on loopback, run as the role runs
it (`python -c <program> FRONT_URL SECONDS CONCURRENCY MAX_TOKENS`, the key in AUTOGLM_PROBE_KEY)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PROGRAM = (Path(__file__).resolve().parents[5] / "roles" / "model_serve" / "files" / "probe_load.py").read_text()


class Server(ThreadingHTTPServer):
    """A front: /v1/models, /v1/completions (JSON) and /v1/chat/completions (SSE when stream is true), with the
    colour header; every `fail_every`-th generation request gets a 500, `cut_streams` ends streams without [DONE]."""

    daemon_threads = True

    def __init__(self, key=None, fail_every=0, cut_streams=False, colour="green", unavailable=False):
        super().__init__(("127.0.0.1", 0), Handler)
        self.key, self.fail_every, self.cut_streams, self.colour = key, fail_every, cut_streams, colour
        self.unavailable = unavailable
        self.lock = threading.Lock()
        self.generations = 0
        self.requests = []

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, content_type="application/json", retry_after=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-AutoGLM-Colour", self.server.colour)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/models":
            return self.send(200, {"object": "list", "data": [{"id": "tiny"}]})
        return self.send(404, {"error": {"message": "no route"}})

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.generations += 1
            n = server.generations
            server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if server.unavailable:
            return self.send(503, {"error": {"code": "not_ready"}}, retry_after="10")
        if server.key and self.headers.get("Authorization") != "Bearer " + server.key:
            return self.send(401, {"error": {"message": "invalid API key"}})
        if server.fail_every and n % server.fail_every == 0:
            return self.send(500, {"error": {"message": "engine error"}})
        if body.get("stream"):
            events = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
            if not server.cut_streams:
                events += b"data: [DONE]\n\n"
            return self.send(200, events, "text/event-stream")
        return self.send(200, {"choices": [{"text": " world"}]})


@pytest.fixture
def serve(running):
    return lambda **kwargs: running(Server(**kwargs))


def probe(*args, key=None, stop_file=None):
    env = {k: v for k, v in os.environ.items() if k not in ("AUTOGLM_PROBE_KEY", "AUTOGLM_PROBE_STOP_FILE")}
    if key is not None:
        env["AUTOGLM_PROBE_KEY"] = key
    if stop_file is not None:
        env["AUTOGLM_PROBE_STOP_FILE"] = str(stop_file)
    return subprocess.run([sys.executable, "-c", PROGRAM, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_steady_requests_of_both_kinds_are_counted_with_their_colour(serve):
    server = serve(key="k3y")
    run = probe(server.url, 1.5, 2, 3, key="k3y")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["model"] == "tiny"
    assert out["requests"] == out["ok"] == len(server.requests) >= 4
    assert out["failed"] == 0 and out["errors"] == {}
    assert out["statuses"] == {"200": out["requests"]} and out["colours"] == {"green": out["requests"]}
    assert out["retry_after"] == {}
    paths = {r["path"] for r in server.requests}
    assert paths == {"/v1/completions", "/v1/chat/completions"}
    assert all(r["body"]["max_tokens"] == 3 and r["auth"] == "Bearer k3y" for r in server.requests)
    assert all(r["body"].get("stream") for r in server.requests if r["path"] == "/v1/chat/completions")
    assert 1.4 <= out["seconds"] < 10


def test_5xx_answers_and_cut_streams_are_failures(serve):
    server = serve(fail_every=3, cut_streams=True)
    out = json.loads(probe(server.url, 1, 1, 1).stdout)
    assert out["failed"] == out["requests"] - out["ok"] > 0
    assert out["statuses"]["500"] == out["requests"] // 3
    # Every streamed 200 lacks [DONE]: each one is a failure named StreamIncomplete.
    streamed_ok = sum(1 for i, r in enumerate(server.requests, 1)
                      if r["body"].get("stream") and i % 3)
    assert out["errors"] == ({"StreamIncomplete": streamed_ok} if streamed_ok else {})


def test_the_stop_file_ends_the_load_early(serve, tmp_path):
    server = serve()
    stop = tmp_path / "stop"
    threading.Timer(1.0, stop.touch).start()
    out = json.loads(probe(server.url, 30, 2, 1, stop_file=stop).stdout)
    assert out["requests"] > 0 and out["failed"] == 0
    assert out["seconds"] < 10


def test_a_503_counts_with_its_retry_after(serve):
    server = serve(unavailable=True)
    out = json.loads(probe(server.url, 0.5, 1, 1).stdout)
    assert out["requests"] == out["failed"] == out["statuses"]["503"] == out["retry_after"]["10"] > 0


def test_a_wrong_key_is_a_failure_not_a_crash(serve):
    server = serve(key="right")
    out = json.loads(probe(server.url, 0.5, 1, 1, key="wrong").stdout)
    assert out["requests"] == out["failed"] > 0 and set(out["statuses"]) == {"401"}


def test_no_front_exits_0_after_the_time_with_no_requests():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        run = probe("http://127.0.0.1:%d" % port, 1, 2, 1)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["model"] is None and out["requests"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1:1", "1", "1"], "usage: probe_load.py FRONT_URL SECONDS CONCURRENCY MAX_TOKENS"),
        (["http://127.0.0.1:1", "soon", "1", "1"], "could not convert string to float: 'soon'"),
        (["http://127.0.0.1:1", "1", "0", "1"], "CONCURRENCY and MAX_TOKENS 1 or more"),
        (["ftp://127.0.0.1:1", "1", "1", "1"], "'ftp://127.0.0.1:1' is not an http(s) URL"),
    ],
)
def test_bad_arguments_fail_before_any_request(args, message):
    run = probe(*args)
    assert run.returncode == 1 and message in run.stderr, run.stderr
