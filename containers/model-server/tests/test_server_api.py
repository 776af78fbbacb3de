"""The OpenAI-compatible API against a real uvicorn server on 127.0.0.1 (tiny random model)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import httpx
import openai
import pytest
from autoglm_server.app import RequestMetricsMiddleware, create_app
from autoglm_server.config import load_settings
from autoglm_server.metrics import Metrics
from fastapi.testclient import TestClient

PROMPTS = [
    "Hello world",
    "The fleet exists to serve",
    "Quick brown foxes jump over lazy dogs and",
    "A",
    "Numbers 0 1 2",
]


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=60)


def complete(server, **body) -> httpx.Response:
    return httpx.post(server.base + "/v1/completions", json={"model": server.model, **body}, timeout=60)


def test_models(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == [server.model]
    assert client.models.retrieve(server.model).id == server.model


def test_completion_with_openai_client(client, server):
    result = client.completions.create(
        model=server.model, prompt="Hello world", max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    choice = result.choices[0]
    assert choice.finish_reason == "length"
    assert choice.text
    assert result.usage.completion_tokens == 12
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + 12


def test_chat_with_openai_client_uses_chat_template(client, server):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    result = client.chat.completions.create(model=server.model, messages=messages, max_tokens=8, temperature=0)
    assert result.object == "chat.completion"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].finish_reason in ("stop", "length")
    # the template renders "<|system|>Be brief.\n<|user|>Hello\n<|assistant|>": count its tokens
    tokenizer = server.app.state.engine.tokenizer
    rendered = "<|system|>Be brief.\n<|user|>Hello\n<|assistant|>"
    assert result.usage.prompt_tokens == len(tokenizer.encode(rendered, add_special_tokens=False))


def test_streaming_completion_equals_non_streaming(client, server):
    args = {"model": server.model, "prompt": "Hello world", "max_tokens": 20, "temperature": 0}
    full = client.completions.create(**args, extra_body={"ignore_eos": True})
    chunks = list(
        client.completions.create(
            **args, stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True}
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == full.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 20


def test_streaming_chat_and_done_marker(client, server):
    messages = [{"role": "user", "content": "Hello"}]
    stream = client.chat.completions.create(model=server.model, messages=messages, max_tokens=10, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    body = {"model": server.model, "messages": messages, "max_tokens": 3, "stream": True}
    raw = httpx.post(server.base + "/v1/chat/completions", json=body, timeout=60)
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_seed_reproducible_and_stop_sequences(server):
    a = complete(server, prompt="Hello", max_tokens=16, temperature=1.0, seed=42, ignore_eos=True).json()
    b = complete(server, prompt="Hello", max_tokens=16, temperature=1.0, seed=42, ignore_eos=True, top_p=0.9).json()
    c = complete(server, prompt="Hello", max_tokens=16, temperature=1.0, seed=42, ignore_eos=True).json()
    assert a["choices"][0]["text"] == c["choices"][0]["text"]
    assert b["choices"][0]["finish_reason"] == "length"
    # stop at a piece of the greedy output: the text ends right before it, finish_reason is "stop"
    greedy = complete(server, prompt="Hello", max_tokens=16, temperature=0, ignore_eos=True).json()
    text = greedy["choices"][0]["text"]
    stop = text[len(text) // 2 :][:3]
    assert stop
    stopped = complete(server, prompt="Hello", max_tokens=16, temperature=0, ignore_eos=True, stop=[stop]).json()
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["text"] == text[: text.find(stop)]


def test_concurrent_requests_are_batched_and_greedy_outputs_match(server, metric_value):
    body = {"max_tokens": 24, "temperature": 0, "ignore_eos": True}
    alone = [complete(server, prompt=p, **body).json()["choices"][0]["text"] for p in PROMPTS]
    before = httpx.get(server.base + "/metrics").text
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS) * 2) as pool:
        futures = [pool.submit(complete, server, prompt=p, **body) for p in PROMPTS * 2]
        batched = [f.result().json()["choices"][0]["text"] for f in futures]
    after = httpx.get(server.base + "/metrics").text
    assert batched == alone * 2
    single_steps = metric_value(after, "autoglm_batch_size_bucket", 'le="1.0"') - metric_value(
        before, "autoglm_batch_size_bucket", 'le="1.0"'
    )
    all_steps = metric_value(after, "autoglm_batch_size_count") - metric_value(before, "autoglm_batch_size_count")
    assert all_steps > single_steps, "no decode step ran with more than one sequence"
    assert metric_value(after, "autoglm_batch_size_sum") - metric_value(before, "autoglm_batch_size_sum") > all_steps


def test_a_response_is_counted_before_its_last_chunk_reaches_the_client():
    """A client that reads /metrics right after a response finds it counted (the count is not left to the end of
    the request's task, which may run after the client already has its answer); a request that fails before it
    answers is counted as a 500 when it ends."""
    metrics = Metrics()

    def counted(status: str) -> float:
        return (
            metrics.registry.get_sample_value(
                "autoglm_requests_total", {"endpoint": "/v1/completions", "status": status}
            )
            or 0.0
        )

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})

    async def failing(scope, receive, send):
        raise RuntimeError("boom")

    seen = []

    async def send(message):
        if message["type"] == "http.response.body":
            seen.append((message.get("more_body", False), counted("404")))

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": "/v1/completions"}
    asyncio.run(RequestMetricsMiddleware(app, metrics, {"/v1/completions"})(scope, receive, send))
    assert seen == [(True, 0.0), (False, 1.0)]
    assert counted("404") == 1.0
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(RequestMetricsMiddleware(failing, metrics, {"/v1/completions"})(scope, receive, send))
    assert counted("500") == 1.0


def test_metrics_exposition(server, metric_value):
    complete(server, prompt="Hello", max_tokens=2)
    complete(server, model="nope", prompt="Hello")
    text = httpx.get(server.base + "/metrics").text
    assert metric_value(text, "autoglm_requests_total", 'endpoint="/v1/completions",status="200"') >= 1
    assert metric_value(text, "autoglm_requests_total", 'endpoint="/v1/completions",status="404"') >= 1
    assert metric_value(text, "autoglm_errors_total", 'kind="model_not_found"') >= 1
    assert metric_value(text, "autoglm_prompt_tokens_total") > 0
    assert metric_value(text, "autoglm_generation_tokens_total") > 0
    assert metric_value(text, "autoglm_model_load_seconds") > 0
    assert metric_value(text, "autoglm_ready") == 1
    for name in (
        "autoglm_request_latency_seconds_count",
        "autoglm_time_to_first_token_seconds_count",
        "autoglm_time_per_output_token_seconds_count",
    ):
        assert any(line.startswith(name) and float(line.split()[-1]) > 0 for line in text.splitlines()), name
    assert "autoglm_requests_running" in text
    assert "autoglm_requests_waiting" in text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "Hi", "max_tokens": 100000}, "max_tokens"),
        ({"prompt": "Hi", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "Hi", "temperature": 2.5}, "temperature"),
        ({"prompt": "Hi", "temperature": "hot"}, "temperature"),
        ({"prompt": "Hi", "top_p": 0}, "top_p"),
        ({"prompt": "Hi", "n": 2}, "n"),
        ({"prompt": "Hi", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "Hi", "stop": [""]}, "stop"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 999999]}, "prompt"),
        ({"prompt": "Hi", "echo": True}, "echo"),
        ({"prompt": "Hi", "logprobs": 2}, "logprobs"),
        ({}, "prompt"),
    ],
)
def test_invalid_completion_parameters_are_400(server, body, param):
    response = complete(server, **body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert param in (error["param"] or "")
    assert error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 300},
        {"messages": [{"role": "user", "content": "x" * 3000}]},
    ],
)
def test_invalid_chat_is_400(server, body):
    response = httpx.post(server.base + "/v1/chat/completions", json={"model": server.model, **body}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_malformed_json_unknown_model_and_route(server):
    response = httpx.post(
        server.base + "/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "error" in response.json()
    unknown = complete(server, model="gpt-9", prompt="Hi")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert httpx.get(server.base + "/v1/nothing").status_code == 404
    assert httpx.get(server.base + "/v1/models/gpt-9").status_code == 404


def test_health(server):
    assert httpx.get(server.base + "/health/live").json() == {"status": "ok", "state": "ready"}
    assert httpx.get(server.base + "/health/ready").status_code == 200


def test_queue_full_is_429_with_retry_after(tiny_model, thread_server, metric_value):
    with thread_server(model_dir=str(tiny_model), max_batch_size=1, max_waiting=1, retry_after=3) as srv:
        body = {"model": srv.model, "prompt": "Hello", "max_tokens": 200, "temperature": 0, "ignore_eos": True}

        def post() -> httpx.Response:
            return httpx.post(srv.base + "/v1/completions", json=body, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            first = pool.submit(post)
            deadline = time.monotonic() + 10
            while srv.app.state.engine.metrics.running._value.get() < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            others = [pool.submit(post) for _i in range(3)]
            responses = [first.result()] + [f.result() for f in others]
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) >= 2 and codes.count(429) >= 1, codes
        limited = next(r for r in responses if r.status_code == 429)
        assert limited.headers["retry-after"] == "3"
        assert limited.json()["error"]["code"] == "queue_full"
        text = httpx.get(srv.base + "/metrics").text
        assert metric_value(text, "autoglm_errors_total", 'kind="queue_full"') >= 1


def test_not_ready_is_503_and_api_key(tiny_model):
    # Without the lifespan the engine never starts: the server is up but not ready.
    settings = load_settings(env={}, model_dir=str(tiny_model), api_key="k3y")
    client = TestClient(create_app(settings))
    body = {"model": settings.model_name, "prompt": "Hi", "max_tokens": 2}
    assert client.get("/health/ready").status_code == 503
    assert client.post("/v1/completions", json=body).status_code == 401
    wrong = client.post("/v1/completions", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    response = client.post("/v1/completions", json=body, headers={"Authorization": "Bearer k3y"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    assert response.headers["retry-after"] == "1"
    chat = {"model": settings.model_name, "messages": [{"role": "user", "content": "Hi"}]}
    assert client.post("/v1/chat/completions", json=chat, headers={"Authorization": "Bearer k3y"}).status_code == 503
    assert client.get("/health/live").status_code == 503  # no generation loop


def test_default_max_tokens(server):
    response = complete(server, prompt="Hello", temperature=0, ignore_eos=True)
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == server.settings.default_max_tokens == 16


def test_liveness_fails_when_the_engine_dies(tmp_path):
    # An empty model directory: loading fails, the generation loop ends, live and ready turn 503.
    settings = load_settings(env={}, host="127.0.0.1", model_dir=str(tmp_path))
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 30
        while client.get("/health/live").status_code == 200:
            assert time.monotonic() < deadline, "the engine never reported its failure"
            time.sleep(0.05)
        live = client.get("/health/live")
        assert live.status_code == 503
        assert live.json() == {"status": "dead", "state": "failed"}
        assert client.get("/health/ready").status_code == 503
        body = {"model": settings.model_name, "prompt": "Hi"}
        assert client.post("/v1/completions", json=body).status_code == 503


@pytest.mark.parametrize("temperature", [1e-300, 5e-324, 0.0])
def test_tiny_temperature_is_greedy_not_a_server_error(server, temperature):
    body = {"prompt": "Hello", "max_tokens": 8, "ignore_eos": True}
    greedy = complete(server, temperature=0, **body).json()["choices"][0]["text"]
    response = complete(server, temperature=temperature, **body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"] == greedy
