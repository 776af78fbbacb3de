"""Failures stay with the request that caused them (hardening #1): real uvicorn, the tiny model wrapped by a stub
that raises on a chosen prompt, inside a running batch."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
import torch

POISON = "poison pill"


class RaisingModel:
    """Delegates to the real model, but raises ``exc`` on the prefill of a prompt that starts with ``ids``
    (or on every decode step with ``on_decode``)."""

    def __init__(self, model, ids: list[int], exc: Exception, on_decode: bool = False) -> None:
        self.model, self.ids, self.exc, self.on_decode = model, ids, exc, on_decode
        self.raised = 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, *args, **kwargs):
        input_ids = kwargs["input_ids"]
        decoding = input_ids.shape[1] == 1 and input_ids.shape[0] >= 1 and kwargs.get("position_ids") is not None
        if (self.on_decode and decoding) or (
            not decoding and input_ids.shape[1] >= len(self.ids) and input_ids[0, : len(self.ids)].tolist() == self.ids
        ):
            self.raised += 1
            raise self.exc
        return self.model(*args, **kwargs)


def post(srv, prompt: str, max_tokens: int = 40, stream: bool = False, timeout: float = 120) -> httpx.Response:
    body = {"model": srv.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    return httpx.post(srv.base + "/v1/completions", json={**body, "stream": stream}, timeout=timeout)


def wait_idle(engine) -> None:
    """A response is out when its last token is; the engine drops the finished request from its batch at the end of
    that step, a moment later (seen under load, 2026-12-07)."""
    deadline = time.monotonic() + 10
    while not engine.idle:
        assert time.monotonic() < deadline, "the engine kept a finished request"
        time.sleep(0.01)


def wait_running(srv, count: int) -> None:
    deadline = time.monotonic() + 30
    while srv.app.state.engine.metrics.running._value.get() < count:
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("exc", "status"),
    [(ValueError("input the model cannot take"), 400), (RuntimeError("CUDA error: an illegal memory access"), 500)],
)
def test_a_failed_prefill_fails_only_its_request(tiny_model, thread_server, exc, status, metric_value):
    with thread_server(model_dir=str(tiny_model), max_batch_size=8) as srv:
        engine = srv.app.state.engine
        stub = RaisingModel(engine.model, engine.tokenizer.encode(POISON, add_special_tokens=True), exc)
        engine.model = stub
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            running = [pool.submit(post, srv, f"Hello number {i}", 120) for i in range(4)]
            wait_running(srv, 4)
            poisoned = pool.submit(post, srv, POISON)
            streamed = pool.submit(post, srv, POISON, 10, True)
            results = [f.result() for f in running]
            bad, bad_stream = poisoned.result(), streamed.result()
        assert stub.raised == 2
        assert [r.status_code for r in results] == [200] * 4
        assert [r.json()["usage"]["completion_tokens"] for r in results] == [120] * 4
        assert bad.status_code == status, bad.text
        assert str(exc) in bad.json()["error"]["message"]
        assert bad_stream.status_code == 200 and '"error"' in bad_stream.text and str(exc) in bad_stream.text
        assert srv.app.state.active == 0
        wait_idle(engine)
        assert httpx.get(srv.base + "/health/ready").status_code == 200
        assert httpx.get(srv.base + "/health/live").status_code == 200
        cause = "input" if status == 400 else "server"
        text = httpx.get(srv.base + "/metrics").text
        assert metric_value(text, "autoglm_engine_failures_total", f'cause="{cause}"') == 2
        # and the server goes on serving, the poisoned prompt included once the stub is gone
        engine.model = stub.model
        assert post(srv, POISON, 4).status_code == 200


def test_a_failed_join_fails_only_the_joining_requests(tiny_model, thread_server):
    with thread_server(model_dir=str(tiny_model), max_batch_size=8) as srv:
        engine = srv.app.state.engine
        real_join = engine._join
        calls = {"n": 0}

        def join_once_broken(joining):
            calls["n"] += 1
            if calls["n"] == 2:  # the second join: the first built the running batch
                raise RuntimeError("merge failed")
            return real_join(joining)

        engine._join = join_once_broken
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            first = pool.submit(post, srv, "Hello", 100)
            wait_running(srv, 1)
            second = pool.submit(post, srv, "Another one", 5)
            ok, failed = first.result(), second.result()
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 100
        assert failed.status_code == 500 and "merge failed" in failed.json()["error"]["message"]
        assert srv.app.state.active == 0


def test_consecutive_failed_steps_mark_the_engine_failed(tiny_model, thread_server):
    with thread_server(model_dir=str(tiny_model), max_batch_size=8, max_consecutive_failures=2) as srv:
        engine = srv.app.state.engine
        engine.model = RaisingModel(engine.model, [], RuntimeError("device lost"), on_decode=True)
        answers = [post(srv, f"Hello {i}", 5) for i in range(2)]
        assert [a.status_code for a in answers] == [500, 500]
        deadline = time.monotonic() + 10
        while httpx.get(srv.base + "/health/live").status_code == 200:
            assert time.monotonic() < deadline, "/health/live stayed green after repeated failures"
            time.sleep(0.05)
        live = httpx.get(srv.base + "/health/live")
        assert live.status_code == 503 and live.json()["state"] == "failed"
        assert post(srv, "Hello", 2).status_code == 503
        assert srv.app.state.active == 0


def test_the_wait_has_a_deadline(tiny_model, thread_server):
    with thread_server(model_dir=str(tiny_model), max_batch_size=2, request_timeout=0.5) as srv:
        engine = srv.app.state.engine
        real = engine.model

        def slow(*args, **kwargs):
            time.sleep(0.05)
            return real(*args, **kwargs)

        engine.model = slow
        started = time.monotonic()
        response = post(srv, "Hello", 200)
        assert response.status_code == 504, response.text
        assert "request_timeout" in response.json()["error"]["message"]
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 10
        while not engine.idle:  # the timed-out request was cancelled: it leaves the batch
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert srv.app.state.active == 0
        engine.model = real
        assert post(srv, "Hello", 2).status_code == 200


def test_out_of_memory_on_prefill_says_so(tiny_model, thread_server):
    with thread_server(model_dir=str(tiny_model), max_batch_size=2) as srv:
        engine = srv.app.state.engine
        engine.model = RaisingModel(
            engine.model, engine.tokenizer.encode(POISON, add_special_tokens=True), torch.OutOfMemoryError("OOM")
        )
        response = post(srv, POISON, 4)
        assert response.status_code == 500
        assert "Out of memory while reading a prompt of" in response.json()["error"]["message"]
