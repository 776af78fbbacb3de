"""SIGTERM drains: the server process stops admitting, finishes in-flight requests, then exits 0."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"


def test_sigterm_finishes_in_flight_requests(tiny_model, tmp_path, metric_value):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "AUTOGLM_MODEL_DIR": str(tiny_model),
        "AUTOGLM_HOST": "127.0.0.1",
        "AUTOGLM_PORT": str(port),
        "AUTOGLM_MAX_BATCH_SIZE": "4",
        "AUTOGLM_DRAIN_TIMEOUT": "60",
        "AUTOGLM_LOG_LEVEL": "info",
    }
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "autoglm_server"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"server exited early: {(tmp_path / 'server.log').read_text()}"
            assert time.monotonic() < deadline, "server did not become ready"
            try:
                if httpx.get(base + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        body = {"model": tiny_model.name, "prompt": "Hello", "max_tokens": 400, "temperature": 0, "ignore_eos": True}
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(httpx.post, base + "/v1/completions", json=body, timeout=120) for _i in range(3)]
            while metric_value(httpx.get(base + "/metrics").text, "autoglm_requests_running") < 3:
                assert time.monotonic() < deadline, "requests never started running"
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            # while draining: not ready, and new generation requests are refused with 503
            drain_deadline = time.monotonic() + 5
            while httpx.get(base + "/health/ready", timeout=5).status_code != 503:
                assert time.monotonic() < drain_deadline, "/health/ready did not turn 503 after SIGTERM"
                time.sleep(0.02)
            assert not any(f.done() for f in futures), "requests finished before the drain could be observed"
            refused = httpx.post(base + "/v1/completions", json=body, timeout=5)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "not_ready"
            results = [f.result() for f in futures]
        for r in results:
            assert r.status_code == 200
            assert r.json()["usage"]["completion_tokens"] == 400
            assert r.json()["choices"][0]["finish_reason"] == "length"
        assert proc.wait(timeout=60) == 0
        assert "drained: no requests in flight" in (tmp_path / "server.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
