"""The API audit trail (autoglm_server.audit) on a small FastAPI app of this test's own, served by real uvicorn on
127.0.0.1: one JSON line per request with the fields the issue names, the key never, the prompt only when asked."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from autoglm_server.audit import AuditMiddleware, key_id, record_usage
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

KEY = "sk-audit-test-0123456789abcdef"
PROMPT = "Summarise the quarterly numbers for ACME"
SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app() -> FastAPI:
    """An OpenAI-shaped app: bearer auth, JSON and streamed chat completions, a failing route, health."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse(
                {"error": {"message": "bad key", "type": "authentication_error", "code": "invalid_api_key"}}, 401
            )
        body = await request.json()
        n = int(body.get("max_tokens", 3))
        usage = {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}
        if not body.get("stream"):
            return {"id": "c", "object": "chat.completion", "model": body["model"], "choices": [], "usage": usage}

        async def events():
            for i in range(n):
                await asyncio.sleep(float(body.get("delay", 0)))
                yield 'data: {"choices":[{"delta":{"content":"t%d"}}]}\n\n' % i
            if body.get("record"):
                record_usage(prompt_tokens=11, completion_tokens=n)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield "data: " + json.dumps({"choices": [], "usage": usage}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        return {"object": "text_completion", "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 2}}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("boom")

    @app.get("/health/ready")
    async def ready():
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics():
        return "autoglm_ready 1\n"

    return app


class Server:
    """The app behind AuditMiddleware, served by a real uvicorn in a thread; the lines land in ``self.lines``."""

    def __init__(self, **options):
        self.lines: list[str] = []
        self.lock = threading.Lock()
        app = make_app()
        app.add_middleware(AuditMiddleware, sink=self._sink, **options)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def _sink(self, line):
        with self.lock:
            self.lines.append(line)

    def records(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.lines) >= count:
                    return [json.loads(x) for x in self.lines]
            time.sleep(0.02)
        raise AssertionError(f"expected {count} audit lines, got {self.lines}")

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def srv():
    with Server() as s:
        yield s


def chat_body(**extra):
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": PROMPT},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://img.example/screen.png"}},
            ],
        },
    ]
    return {"model": "glm-test", "messages": messages, **extra}


def auth(key=KEY):
    return {"Authorization": f"Bearer {key}"}


def test_a_request_gets_one_line_with_every_field_and_no_secret(srv):
    r = httpx.post(srv.base + "/v1/chat/completions", json=chat_body(max_tokens=4), headers=auth(), timeout=10)
    assert r.status_code == 200
    (rec,) = srv.records(1)
    assert rec["event"] == "api_request"
    assert rec["time"].endswith("Z") and "T" in rec["time"]
    assert rec["client"] == "127.0.0.1"
    assert rec["key_id"] == key_id(KEY) and len(rec["key_id"]) == 16
    assert (rec["method"], rec["endpoint"], rec["model"]) == ("POST", "/v1/chat/completions", "glm-test")
    assert rec["status"] == 200
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["images"]) == (7, 4, 2)
    assert rec["stream"] is False and "aborted" not in rec
    assert 0 < rec["latency"] < 10
    line = srv.lines[0]
    assert KEY not in line and PROMPT not in line and "iVBORw0KGgo" not in line and "prompt" not in rec


def test_a_stream_without_usage_takes_the_counts_the_route_records(srv):
    body = chat_body(max_tokens=5, stream=True, record=True)
    with httpx.stream("POST", srv.base + "/v1/chat/completions", json=body, headers=auth(), timeout=10) as r:
        assert r.status_code == 200
        assert "[DONE]" in r.read().decode()
    (rec,) = srv.records(1)
    assert rec["stream"] is True
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (11, 5)


def test_a_stream_with_a_usage_chunk_is_read_for_its_counts(srv):
    body = chat_body(max_tokens=3, stream=True, stream_options={"include_usage": True})
    r = httpx.post(srv.base + "/v1/chat/completions", json=body, headers=auth(), timeout=10)
    assert r.status_code == 200
    (rec,) = srv.records(1)
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["stream"]) == (7, 3, True)


def test_the_route_s_counts_win_over_the_usage_chunk(srv):
    body = chat_body(max_tokens=3, stream=True, record=True, stream_options={"include_usage": True})
    httpx.post(srv.base + "/v1/chat/completions", json=body, headers=auth(), timeout=10)
    (rec,) = srv.records(1)
    assert rec["prompt_tokens"] == 11


@pytest.mark.parametrize(
    "headers, expected", [({"Authorization": "Bearer wrong-key"}, key_id("wrong-key")), ({}, None)]
)
def test_a_refused_request_is_recorded_with_its_error_and_the_key_id_presented(srv, headers, expected):
    r = httpx.post(srv.base + "/v1/chat/completions", json=chat_body(), headers=headers, timeout=10)
    assert r.status_code == 401
    (rec,) = srv.records(1)
    assert (rec["status"], rec["error"], rec["key_id"]) == (401, "invalid_api_key", expected)
    assert rec["key_id"] != key_id(KEY)
    assert "wrong-key" not in srv.lines[0]


def test_a_completion_s_usage_and_model(srv):
    r = httpx.post(srv.base + "/v1/completions", json={"model": "m", "prompt": "abc"}, timeout=10)
    assert r.status_code == 200
    (rec,) = srv.records(1)
    assert (rec["endpoint"], rec["model"], rec["prompt_tokens"], rec["completion_tokens"], rec["images"]) == (
        "/v1/completions",
        "m",
        3,
        2,
        0,
    )
    assert rec["key_id"] is None


def test_health_and_metrics_are_not_api_calls(srv):
    assert httpx.get(srv.base + "/health/ready", timeout=10).status_code == 200
    assert httpx.get(srv.base + "/metrics", timeout=10).status_code == 200
    assert httpx.get(srv.base + "/v1/unknown", timeout=10).status_code == 404
    (rec,) = srv.records(1)
    assert (rec["endpoint"], rec["status"], rec["model"]) == ("/v1/unknown", 404, None)
    time.sleep(0.2)
    assert len(srv.lines) == 1


def test_an_unhandled_error_is_recorded_as_500(srv):
    assert httpx.get(srv.base + "/boom", timeout=10).status_code == 500
    (rec,) = srv.records(1)
    assert (rec["endpoint"], rec["status"]) == ("/boom", 500)


def test_prompts_are_logged_only_when_turned_on():
    with Server(log_prompts=True) as s:
        httpx.post(s.base + "/v1/chat/completions", json=chat_body(), headers=auth(), timeout=10)
        httpx.post(s.base + "/v1/completions", json={"model": "m", "prompt": [1, 2, 3]}, timeout=10)
        chat, tokens = s.records(2)
    assert chat["prompt"] == f"system: Be brief.\nuser: {PROMPT}[image][image]"
    assert "iVBORw0KGgo" not in s.lines[0]
    assert tokens["prompt"] == "<3 token ids>"


def test_concurrent_requests_keep_their_own_counts(srv):
    def one(n):
        body = chat_body(max_tokens=n, stream=True, record=True, delay=0.01)
        return httpx.post(srv.base + "/v1/chat/completions", json=body, headers=auth(), timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(one, range(1, 25))) == {200}
    recs = srv.records(24)
    assert sorted(r["completion_tokens"] for r in recs) == list(range(1, 25))
    assert all(r["prompt_tokens"] == 11 for r in recs)


def test_a_client_that_goes_away_mid_stream_is_recorded_as_aborted(srv):
    body = chat_body(max_tokens=200, stream=True, delay=0.02)
    with httpx.stream("POST", srv.base + "/v1/chat/completions", json=body, headers=auth(), timeout=10) as r:
        for _chunk in r.iter_bytes():
            break
    (rec,) = srv.records(1, timeout=15)
    assert rec["status"] == 200 and rec["aborted"] is True


def test_an_oversized_body_is_audited_without_its_content():
    with Server(max_body=100) as srv:
        r = httpx.post(srv.base + "/v1/chat/completions", json=chat_body(), headers=auth(), timeout=10)
        assert r.status_code == 200
        (rec,) = srv.records(1)
    assert (rec["model"], rec["images"], rec["status"], rec["prompt_tokens"]) == (None, 0, 200, 7)


def test_record_usage_outside_a_request_does_nothing():
    record_usage(1, 2)


def test_key_id_is_stable_short_and_not_the_key():
    assert key_id(KEY) == key_id(KEY) != key_id(KEY + "x")
    assert len(key_id(KEY)) == 16 and KEY not in key_id(KEY)


def test_lines_go_to_stdout_of_a_real_server_process(tmp_path):
    """uvicorn in its own process: the audit lines are its stdout. uvicorn's own log goes to stderr; its access log
    (stdout) is off, as in the server unless log_level is debug."""
    (tmp_path / "auditapp.py").write_text(
        textwrap.dedent(
            """\
            from autoglm_server.audit import AuditMiddleware
            from fastapi import FastAPI

            app = FastAPI()
            app.add_middleware(AuditMiddleware)


            @app.post("/v1/completions")
            async def completions(body: dict):
                return {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}
            """
        )
    )
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(tmp_path)]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "auditapp:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.post(
                    f"http://127.0.0.1:{port}/v1/completions",
                    json={"model": "m", "prompt": "x"},
                    headers=auth(),
                    timeout=2,
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
                time.sleep(0.1)
        assert r.status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    lines = [json.loads(x) for x in out.splitlines()]
    assert [(x["endpoint"], x["status"], x["key_id"]) for x in lines] == [("/v1/completions", 200, key_id(KEY))]
    assert KEY not in out and KEY not in err
