"""Open-AutoGLM's requests against the server with a tiny GLM-4.1V: the official `openai` client, real uvicorn.

The request shape is the one Open-AutoGLM's phone agent sends (phone_agent/model/client.py and agent.py in
zai-org/Open-AutoGLM): a long system prompt, user turns whose content is [image_url (a data:image/png URL of the
full-resolution screenshot), text], earlier turns with their images removed, assistant turns as plain strings,
and `max_tokens=3000, temperature=0.0, top_p=0.85, frequency_penalty=0.2`, streamed (the agent) or not (its
deployment check).
"""

from __future__ import annotations

import concurrent.futures
import http.server
import io
import json
import threading
import time

import httpx
import openai
import pytest
import torch
from autoglm_server.config import load_settings
from autoglm_server.engine import Engine, GenRequest
from autoglm_server.metrics import Metrics
from PIL import Image

# Our own words, in the manner of an Android agent's system prompt (about 2k tokens with the tiny tokenizer).
SYSTEM_PROMPT = (
    "The current date: 2026-12-05, Saturday\n# Setup\nYou are a professional Android operation agent. Given a "
    "screenshot of the Android interface at each step, first analyse the situation, then plan the best action "
    "as Python-style pseudo-code.\n# Format\nThink first inside <think>...</think>, then give the action inside "
    "<answer>...</answer>.\n# Actions\n"
    + "".join(
        f'- do(action="{name}", {args}): {what}\n'
        for name, args, what in [
            ("Tap", "element=[x,y]", "tap the point x, y of the screen (0 to 999 on each axis)"),
            ("Type", 'text="..."', "type text into the focused input field"),
            ("Swipe", "start=[x1,y1], end=[x2,y2]", "swipe from one point to another"),
            ("Long Press", "element=[x,y]", "press and hold a point"),
            ("Double Tap", "element=[x,y]", "tap a point twice quickly"),
            ("Launch", 'app="Settings"', "open an app by its name"),
            ("Back", "", "go back"),
            ("Home", "", "go to the home screen"),
            ("Wait", 'duration="2 seconds"', "wait for the page to load"),
            ("Take_over", 'message="..."', "ask the user to act, e.g. to log in"),
        ]
    )
    + 'finish(message="..."): end the task and say what was done.\n# Rules\n'
    + "".join(
        f"{i}. Check the current app before acting; never tap outside the screen; wait when a page is loading.\n"
        for i in range(1, 25)
    )
)


def user_turn(text: str, image_url: str | None) -> dict:
    content: list[dict] = []
    if image_url:
        content.append({"type": "image_url", "image_url": {"url": image_url}})
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def without_images(message: dict) -> dict:
    """What Open-AutoGLM's MessageBuilder.remove_images_from_message does to earlier turns."""
    return {**message, "content": [p for p in message["content"] if p.get("type") == "text"]}


def agent_messages(screenshot_url: str, steps: int = 2) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for step in range(steps - 1):
        messages.append(without_images(user_turn(f'** Screen Info **\n{{"current_app": "App {step}"}}', "x")))
        messages.append(
            {"role": "assistant", "content": f'<think>Step {step}.</think><answer>do(action="Back")</answer>'}
        )
    messages.append(user_turn('Open the settings and turn on Wi-Fi\n\n{"current_app": "System Home"}', screenshot_url))
    return messages


AGENT_PARAMS = {"max_tokens": 24, "temperature": 0.0, "top_p": 0.85, "frequency_penalty": 0.2}


@pytest.fixture
def client(vlm_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=vlm_server.base + "/v1", api_key="EMPTY", max_retries=0, timeout=120)


def chat(srv, timeout: float = 120, headers: dict | None = None, **body) -> httpx.Response:
    return httpx.post(
        srv.base + "/v1/chat/completions", json={"model": srv.model, **body}, headers=headers, timeout=timeout
    )


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


# --------------------------------------------------------------------------------------------- the client
def test_agent_request_streaming_and_not(client, vlm_server, screenshot, data_url, metric_value):
    url = data_url(screenshot)
    assert 900_000 < len(url) < 2_000_000, "the screenshot should be about 1 MB of base64, like a real one"
    messages = agent_messages(url)
    before = httpx.get(vlm_server.base + "/metrics").text
    full = client.chat.completions.create(model=vlm_server.model, messages=messages, stream=False, **AGENT_PARAMS)
    again = client.chat.completions.create(model=vlm_server.model, messages=messages, stream=False, **AGENT_PARAMS)
    stream = client.chat.completions.create(model=vlm_server.model, messages=messages, stream=True, **AGENT_PARAMS)
    chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
    text = full.choices[0].message.content
    assert text and text == again.choices[0].message.content == "".join(chunks), "temperature 0 must be repeatable"
    assert full.choices[0].finish_reason in ("stop", "length")
    # 1080x2400 at max_pixels 5,000,000 -> 2352x1036 -> 168x74 patches -> 3,108 merged image tokens
    tokenizer = vlm_server.app.state.engine.tokenizer
    assert full.usage.prompt_tokens > 3108 + len(tokenizer.encode(SYSTEM_PROMPT, add_special_tokens=False))
    after = httpx.get(vlm_server.base + "/metrics").text
    assert metric_value(after, "autoglm_images_total") - metric_value(before, "autoglm_images_total") == 3
    assert metric_value(after, "autoglm_image_preprocess_seconds_count") > metric_value(
        before, "autoglm_image_preprocess_seconds_count"
    )
    image_prefills = 'modality="image"'
    assert (
        metric_value(after, "autoglm_prefill_seconds_count", image_prefills)
        - metric_value(before, "autoglm_prefill_seconds_count", image_prefills)
        == 3
    )


def test_usage_counts_image_tokens(vlm_server, make_screenshot, data_url):
    # A 1080x2400 screenshot is 3,108 image tokens at the default max_pixels: compare with and without it.
    url = data_url(make_screenshot(noise=0))
    with_image = chat(vlm_server, messages=[user_turn("Hi", url)], max_tokens=1).json()["usage"]["prompt_tokens"]
    text_only = chat(vlm_server, messages=[user_turn("Hi", None)], max_tokens=1).json()["usage"]["prompt_tokens"]
    placeholder = 3  # <|begin_of_image|><|image|><|end_of_image|>: the <|image|> expands to 3,108
    assert with_image - text_only == 3108 + placeholder - 1


def test_context_check_counts_the_images(vlm_server, make_screenshot, data_url):
    url = data_url(make_screenshot(noise=0))
    response = chat(vlm_server, messages=[user_turn("Hi", url)], max_tokens=16384)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "context_length_exceeded"
    assert "3108 of them for 1 image" in error["message"]


def test_penalties_are_honoured(vlm_server):
    # A random model's greedy output repeats one token: each penalty must change that, and 0 must not.
    base = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 12, "temperature": 0, "ignore_eos": True}

    def text(**extra) -> str:
        response = chat(vlm_server, **{**base, **extra})
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    plain = text()
    assert text(frequency_penalty=0.0, presence_penalty=0.0, repetition_penalty=1.0) == plain
    tokens = vlm_server.app.state.engine.tokenizer.encode(plain, add_special_tokens=False)
    assert len(set(tokens)) <= 2, f"expected a repetitive greedy output from the random model, got {plain!r}"
    for extra in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"repetition_penalty": 2.0}):
        penalised = text(**extra)
        assert penalised != plain, extra
        assert len(set(vlm_server.app.state.engine.tokenizer.encode(penalised, add_special_tokens=False))) > len(
            set(tokens)
        ), extra
    # top_k=1 samples the most likely token: the greedy answer, whatever the temperature and seed
    assert text(temperature=1.5, top_k=1, seed=7) == plain


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"top_k": -2}, "top_k"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": []}, "tools"),
        ({"mirostat": 1}, "mirostat"),
    ],
)
def test_unsupported_or_invalid_sampling_fields_are_400_naming_them(vlm_server, extra, param):
    response = chat(vlm_server, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, **extra)
    assert response.status_code == 400, response.text
    assert param in (error_of(response)["param"] or "")
    assert param in error_of(response)["message"] or error_of(response)["param"] == param


def test_fields_that_do_not_change_output_are_accepted(vlm_server):
    response = chat(vlm_server, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, user="u-1", store=False)
    assert response.status_code == 200, response.text


def test_string_content_format_gives_the_same_prompt(tiny_vlm, thread_server, make_screenshot, data_url):
    url = data_url(make_screenshot(540, 1200, noise=0))
    messages = agent_messages(url)
    usage = {}
    for fmt in ("openai", "string"):
        with thread_server(model_dir=str(tiny_vlm), chat_template_content_format=fmt, warmup=False) as srv:
            body = chat(srv, messages=messages, max_tokens=4, temperature=0).json()
            usage[fmt] = (body["usage"]["prompt_tokens"], body["choices"][0]["message"]["content"])
    assert usage["openai"] == usage["string"]


# --------------------------------------------------------------------------------------------- batching
def _engine_run(engine: Engine, preps: list, max_tokens: int = 10, **sampling) -> list[list[int]]:
    """Admit every prepared prompt in one step (one mixed batch) and decode them together."""
    reqs = [
        GenRequest(
            prompt_ids=p.prompt_ids,
            mm_inputs=p.mm_inputs,
            images=p.images,
            max_tokens=max_tokens,
            temperature=0.0,
            ignore_eos=True,
            on_event=lambda ev: None,
            # varied greedy outputs: a wrong position shows as a different token
            **(sampling or {"frequency_penalty": 1.0}),
        )
        for p in preps
    ]
    with engine._cond:
        for req in reqs:
            engine._enqueue(req)
    widths = []
    while any(r.finish_reason is None for r in reqs):
        engine.step()
        widths.append(len(engine._running))
    assert all(r.finish_reason == "length" for r in reqs)
    return [r.output_ids for r in reqs], widths


def test_mixed_batch_greedy_outputs_equal_solo_outputs(tiny_vlm, make_screenshot, data_url):
    """Text and image requests decoded in one left-padded batch: multimodal rotary positions (3-D, with a
    per-sequence offset) stay right for every row, so each output equals the same request alone."""
    settings = load_settings(env={}, host="127.0.0.1", model_dir=str(tiny_vlm), max_batch_size=8, warmup=False)
    engine = Engine(settings, Metrics())
    from autoglm_server.protocol import ChatMessage

    def prep(content):
        return engine.prepare_chat([ChatMessage(role="user", content=content)])

    contents = [
        "Hello world",
        [
            {"type": "image_url", "image_url": {"url": data_url(make_screenshot(540, 1200, seed=1, noise=0))}},
            {"type": "text", "text": "Open the settings"},
        ],
        "The fleet exists to serve the model and",
        [
            {"type": "image_url", "image_url": {"url": data_url(make_screenshot(720, 1600, seed=2, noise=0))}},
            {"type": "text", "text": "Tap"},
        ],
        [
            {"type": "image_url", "image_url": {"url": data_url(make_screenshot(300, 300, seed=3, noise=0))}},
            {"type": "image_url", "image_url": {"url": data_url(make_screenshot(600, 300, seed=4, noise=0))}},
            {"type": "text", "text": "Compare"},
        ],
    ]
    with torch.inference_mode():
        engine._load()
        assert engine._encode_images is not None, "GLM-4.1V's vision tower should run on the preprocessing threads"
        preps = [prep(c) for c in contents]  # images encoded by the vision tower ahead of the engine
        encoder, engine._encode_images = engine._encode_images, None
        raw = [prep(c) for c in contents]  # the same prompts as pixel values, for the engine's fallback path
        engine._encode_images = encoder
        assert [p.images for p in preps] == [0, 1, 0, 1, 2]
        assert all("image_features" in p.mm_inputs for p in preps if p.images)
        assert all("pixel_values" in p.mm_inputs for p in raw if p.images)
        deltas_differ = len({p.image_tokens for p in preps}) > 2
        assert deltas_differ
        alone = [_engine_run(engine, [p])[0][0] for p in preps]
        together, widths = _engine_run(engine, preps)
        # The positions and the image embeddings, against transformers' own generate (which computes both its way)
        for encoded, pixels in zip(preps, raw, strict=True):
            ids = torch.tensor([pixels.prompt_ids])
            reference = engine.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                **(pixels.mm_inputs or {}),
                max_new_tokens=10,
                do_sample=False,
                repetition_penalty=1.3,
            )[0, ids.shape[1] :].tolist()
            assert _engine_run(engine, [encoded], repetition_penalty=1.3)[0][0] == reference
            assert _engine_run(engine, [pixels], repetition_penalty=1.3)[0][0] == reference
    assert max(widths) == len(preps), "the requests did not decode in one batch"
    assert together == alone


def test_concurrent_text_and_image_requests_match_their_solo_answers(vlm_server, make_screenshot, data_url):
    bodies = [
        {"messages": [user_turn("Open settings", data_url(make_screenshot(540, 1200, seed=s, noise=0)))]}
        if s % 2
        else {"messages": [{"role": "user", "content": f"Hello number {s}"}]}
        for s in range(6)
    ]
    params = {"max_tokens": 10, "temperature": 0, "frequency_penalty": 1.0, "ignore_eos": True}
    alone = [chat(vlm_server, **b, **params).json()["choices"][0]["message"]["content"] for b in bodies]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        together = list(
            pool.map(lambda b: chat(vlm_server, **b, **params).json()["choices"][0]["message"]["content"], bodies)
        )
    assert together == alone


# --------------------------------------------------------------------------------------------- bad input
def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(out, format="GIF")
    return out.getvalue()


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (9, 9, 9)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("data:image/png;base64,iVBORw0KGgo!!!notbase64", "not valid base64"),
        ("data:image/png;base64," + "QUJD" * 10, "not a PNG, JPEG or WebP"),
        ("GIF", "not a PNG, JPEG or WebP"),
        ("HUGE", "max_image_pixels"),
        ("data:image/png;base64," + "A" * (6 * 1024 * 1024), "max_image_bytes"),
        ("data:image/png,rawbytes", "base64-encoded"),
        ("data:text/plain;base64,SGVsbG8=", "not an image"),
        ("http://localhost/screen.png", "allowed_image_hosts"),
        ("https://example.com/screen.png", "allowed_image_hosts"),
        ("file:///etc/passwd", "never read"),
        ("/etc/passwd", "never read"),
    ],
)
def test_bad_images_are_400_naming_message_and_part(vlm_server, data_url, url, fragment):
    if url == "GIF":
        url = data_url(_gif(), "image/gif")
    elif url == "HUGE":
        url = data_url(_png(5000, 5000))  # 25 MP > this server's 20 MP (decoded from the header only)
    messages = [{"role": "system", "content": "s"}, user_turn("look", url)]
    response = chat(vlm_server, messages=messages, max_tokens=2)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["param"] == "messages[1].content[0]"
    assert fragment in error["message"]
    assert "messages[1].content[0]" in error["message"]
    # ... and the server goes on serving
    assert chat(vlm_server, messages=[{"role": "user", "content": "Hi"}], max_tokens=2).status_code == 200


def test_too_many_images(vlm_server, data_url):
    url = data_url(_png(28, 28))
    content = [{"type": "image_url", "image_url": {"url": url}}] * 11 + [{"type": "text", "text": "x"}]
    response = chat(vlm_server, messages=[{"role": "user", "content": content}], max_tokens=2)
    assert response.status_code == 400
    assert "max_images_per_request" in error_of(response)["message"]
    content = [{"type": "image_url", "image_url": {"url": url}}] * 10 + [{"type": "text", "text": "x"}]
    assert chat(vlm_server, messages=[{"role": "user", "content": content}], max_tokens=2).status_code == 200


def test_image_outside_a_user_turn_and_unknown_part_types(vlm_server, data_url):
    url = data_url(_png(28, 28))
    assistant = {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": url}}]}
    response = chat(vlm_server, messages=[{"role": "user", "content": "a"}, assistant], max_tokens=2)
    assert response.status_code == 400
    assert "user messages only" in error_of(response)["message"]
    audio = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}
    assert chat(vlm_server, messages=[audio], max_tokens=2).status_code == 400


def test_image_to_a_text_only_model_is_400(server, data_url):
    response = chat(server, messages=[user_turn("look", data_url(_png(28, 28)))], max_tokens=2)
    assert response.status_code == 400
    assert "has no vision input" in error_of(response)["message"]


def test_body_over_the_limit_is_413_and_liveness_stays_fast(vlm_server):
    big = json.dumps({"model": vlm_server.model, "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]})
    timings = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            assert httpx.get(vlm_server.base + "/health/live", timeout=5).status_code == 200
            timings.append(time.monotonic() - started)
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        declared = httpx.post(
            vlm_server.base + "/v1/chat/completions",
            content=big,
            headers={"content-type": "application/json"},
            timeout=30,
        )

        def chunks():
            for i in range(0, len(big), 256 * 1024):
                yield big[i : i + 256 * 1024].encode()

        chunked = httpx.post(
            vlm_server.base + "/v1/chat/completions",
            content=chunks(),
            headers={"content-type": "application/json"},
            timeout=30,
        )
    finally:
        stop.set()
        prober.join()
    for response in (declared, chunked):
        assert response.status_code == 413, response.text[:300]
        assert "max_request_bytes" in error_of(response)["message"]
    assert timings and max(timings) < 1.0, f"/health/live took up to {max(timings):.2f} s"


# --------------------------------------------------------------------------------------------- remote images
class _ImageHandler(http.server.BaseHTTPRequestHandler):
    png = b""

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://localhost:1/elsewhere.png")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.png)))
        self.end_headers()
        self.wfile.write(self.png)

    def log_message(self, *args: object) -> None:
        pass


def test_remote_image_from_an_allowed_host_and_no_redirects(vlm_server, make_screenshot, data_url):
    png = make_screenshot(540, 1200, seed=5, noise=0)
    _ImageHandler.png = png
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        params = {"max_tokens": 6, "temperature": 0, "ignore_eos": True}
        remote = chat(vlm_server, messages=[user_turn("Tap", base + "/screen.png")], **params)
        inline = chat(vlm_server, messages=[user_turn("Tap", data_url(png))], **params)
        assert remote.status_code == 200, remote.text
        assert remote.json()["choices"] == inline.json()["choices"]
        assert remote.json()["usage"] == inline.json()["usage"]
        redirected = chat(vlm_server, messages=[user_turn("Tap", base + "/redirect")], **params)
        assert redirected.status_code == 400
        assert "HTTP 302" in error_of(redirected)["message"]
    finally:
        httpd.shutdown()


def test_each_api_call_leaves_one_audit_line_without_the_prompt(vlm_server, make_screenshot, data_url, capsys):
    url = data_url(make_screenshot(540, 1200, seed=9, noise=0))
    capsys.readouterr()
    body = {"messages": [user_turn("a secret instruction", url)], "max_tokens": 3, "temperature": 0}
    assert chat(vlm_server, headers={"x-request-id": "audit-ok"}, **body).status_code == 200
    refused_call = chat(
        vlm_server,
        headers={"x-request-id": "audit-refused"},
        messages=[user_turn("x", "file:///etc/passwd")],
        max_tokens=1,
    )
    assert refused_call.status_code == 400
    # The server writes a request's line once the response has been sent, so the client can hold a response a
    # moment before its line is there (and a line of an earlier test's request can arrive in this capture): read
    # until the lines of both request ids are there.
    out, by_id, deadline = "", {}, time.monotonic() + 10
    while len(by_id) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
        out += capsys.readouterr().out
        lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"event":"api_request"')]
        by_id = {x["request_id"]: x for x in lines if x.get("request_id") in ("audit-ok", "audit-refused")}
    assert sorted(by_id) == ["audit-ok", "audit-refused"], out[-2000:]
    ok, refused = by_id["audit-ok"], by_id["audit-refused"]
    assert (ok["status"], ok["model"], ok["images"], ok["stream"]) == (200, vlm_server.model, 1, False)
    assert ok["prompt_tokens"] > 700 and ok["completion_tokens"] == 3 and ok["latency"] > 0
    assert ok["client"] == "127.0.0.1" and ok["key_id"] is None
    assert refused["status"] == 400
    assert "a secret instruction" not in out and url[30:80] not in out
