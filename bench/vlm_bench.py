"""Vision-language serving benchmark: autoglm_server against the guides' design, on a mixed screenshot/text load.

Baseline: the deployment guides' design for a vision-language model, a FastAPI `/v1/chat/completions`
endpoint taking the same OpenAI-style chat body, that decodes the image, runs the model's processor and
`model.generate` for one request at a time (a semaphore of 1). Both servers run as separate processes on
127.0.0.1 with the same random-init tiny GLM-4.1V (`autoglm_server.devtools.make_random_vlm`, Open-AutoGLM's
architecture), the same dtype and the same number of torch threads. Clients send greedy requests of a fixed
length (EOS ignored: `ignore_eos` for ours, `min_new_tokens` for the baseline). In the load, numbering each
level's requests round-robin over its clients, every fourth one carries a phone screenshot (a distinct
1080x2400 PNG, about 1 MB, 1.3 MB of base64, made here with PIL) plus an agent-style system prompt and task;
the others are short text-only chats. With 8 or 32 clients that is a quarter of the clients sending
screenshots, the rest text. Both servers resize images down to the same ``--max-pixels`` (Open-AutoGLM's
vLLM setting, 5,000,000), so both see the same prompts.

    python bench/vlm_bench.py --threads 1                 # CPU, 1/8/32 clients
    python bench/vlm_bench.py --device cuda [--model-dir DIR]   # GPU, bf16 (DIR: e.g. AutoGLM-Phone-9B)
    python bench/vlm_bench.py --threads 1 --image-every 0  # the same load, text only (a control)

Prints generated tokens/s and P50/P95 latency per level and the ratios against the baseline, and the time
to first token (TTFT) of the text requests: ours streams (`stream: true`), so its TTFT is the first content
chunk; the baseline does not stream, so its TTFT is its latency. Per level it also prints each server's
CPU seconds (from /proc) and our server's own account from its /metrics: seconds of image and text prefill,
image preprocessing, decode steps and their mean batch.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "containers" / "model-server" / "src"
sys.path.insert(0, str(SRC))


# --------------------------------------------------------------------------- the baseline server
class ChatBody(BaseModel):
    messages: list[dict[str, Any]]
    max_tokens: int = 64


def serve_baseline(model_dir: str, port: int, device: str, dtype: str, threads: int, max_pixels: int) -> None:
    import io

    import torch
    import uvicorn
    from autoglm_server.engine import load_processor  # AutoProcessor wants torchvision: built as the server does
    from fastapi import FastAPI
    from PIL import Image
    from starlette.concurrency import run_in_threadpool
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    processor = load_processor(model_dir, config, tokenizer)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True, dtype=torch_dtype)
    model = model.to(device).eval()
    # Images resized down to max_pixels by the processor itself, as Open-AutoGLM's vLLM command line asks
    # (--mm_processor_kwargs '{"max_pixels":N}') and as autoglm_server does (setting max_pixels).
    size = dict(processor.image_processor.size)
    size["max_pixels" if "max_pixels" in size else "longest_edge"] = max_pixels
    semaphore = asyncio.Semaphore(1)
    app = FastAPI()

    def generate(body: ChatBody) -> dict:
        messages, images = [], []
        for m in body.messages:
            if isinstance(m["content"], str):
                messages.append(m)
                continue
            parts = []
            for part in m["content"]:
                if part["type"] == "image_url":
                    data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                    images.append(Image.open(io.BytesIO(data)).convert("RGB"))
                    parts.append({"type": "image"})
                else:
                    parts.append(part)
            messages.append({"role": m["role"], "content": parts})
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if images:
            inputs = processor(text=[text], images=images, return_tensors="pt", images_kwargs={"size": size})
        else:
            inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(torch_dtype)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=body.max_tokens,
                min_new_tokens=body.max_tokens,
                do_sample=False,
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        return {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": tokenizer.decode(new)}}],
            "usage": {"prompt_tokens": int(inputs["input_ids"].shape[1]), "completion_tokens": int(new.numel())},
        }

    @app.get("/health/ready")
    async def ready() -> dict:
        return {"status": "ready"}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody) -> dict:
        async with semaphore:
            return await run_in_threadpool(generate, body)

    # warm up text and vision paths, like the server's warm-up (a small grey image)
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), (128, 128, 128)).save(buf, format="PNG")
    grey = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    generate(ChatBody(messages=[{"role": "user", "content": "Hello"}], max_tokens=4))
    generate(ChatBody(messages=[user_turn("Hello", grey)], max_tokens=4))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --------------------------------------------------------------------------- load
PROMPTS = [
    "The fleet exists to serve the model.",
    "Hello world! How are you today?",
    "Quick brown foxes jump over lazy dogs while the scheduler",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation",
]
TASKS = [
    "Open the settings and turn on the Wi-Fi.",
    "Search for a restaurant nearby.",
    "Launch the calendar and add a meeting at 10.",
]


def user_turn(text: str, image_url: str | None) -> dict:
    content: list[dict] = [{"type": "image_url", "image_url": {"url": image_url}}] if image_url else []
    return {"role": "user", "content": [*content, {"type": "text", "text": text}]}


def system_prompt() -> str:
    from autoglm_server.devtools import VLM_TEXT

    return " ".join(VLM_TEXT.split())


def messages_for(n: int, image_url: str | None) -> list[dict]:
    """Request number ``n`` of a level: an agent step with a screenshot, or a short text chat."""
    if image_url:
        task = TASKS[n % len(TASKS)]
        return [{"role": "system", "content": system_prompt()}, user_turn(f"Task: {task}", image_url)]
    return [{"role": "user", "content": PROMPTS[n % len(PROMPTS)]}]


async def run_level(
    url: str, kind: str, model: str, clients: int, per_client: int, max_tokens: int, every: int, images: list[str]
) -> dict:
    import httpx

    records: list[dict] = []

    async def one(client: httpx.AsyncClient, n: int) -> None:
        image = images[n // every] if every and n % every == 0 else None
        body: dict[str, Any] = {"model": model, "messages": messages_for(n, image), "max_tokens": max_tokens}
        if kind == "autoglm":
            body.update(temperature=0, ignore_eos=True, stream=True, stream_options={"include_usage": True})
        t0 = time.perf_counter()
        first = None
        if kind == "baseline":
            r = await client.post(url + "/v1/chat/completions", json=body)
            r.raise_for_status()
            usage = r.json()["usage"]
        else:
            usage = {}
            async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        raise RuntimeError(f"stream error: {chunk['error']}")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk["choices"]:
                        # the first chunk (role only) is sent before any token: the first token is the
                        # first chunk with content (or the finish, if the text so far decodes to nothing)
                        if first is None and (choice["delta"].get("content") or choice.get("finish_reason")):
                            first = time.perf_counter()
        done = time.perf_counter()
        records.append(
            {
                "n": n,
                "image": image is not None,
                "start": t0,
                "first": (first if first is not None else done) - t0,
                "latency": done - t0,
                "prompt_tokens": usage["prompt_tokens"],
                "tokens": usage["completion_tokens"],
            }
        )

    async def worker(client: httpx.AsyncClient, k: int) -> None:
        for j in range(per_client):
            await one(client, j * clients + k)

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=3600, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client, k) for k in range(clients)))
        wall = time.perf_counter() - t0
    for r in records:
        r["start"] -= t0
    return summarize(records, clients, wall)


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile as serve_bench.py takes it (nearest rank); None for no values."""
    if not values:
        return None
    values = sorted(values)
    return values[max(0, round(q * len(values)) - 1)]


def summarize(records: list[dict], clients: int, wall: float) -> dict:
    tokens = sum(r["tokens"] for r in records)
    latencies = [r["latency"] for r in records]
    text = [r for r in records if not r["image"]]
    image = [r for r in records if r["image"]]
    # text requests that waited for their first token while an image request waited for its own (that is,
    # while the image was being decoded, preprocessed or prefilled)
    during = [
        t
        for t in text
        if any(i["start"] < t["start"] + t["first"] and t["start"] < i["start"] + i["first"] for i in image)
    ]
    return {
        "clients": clients,
        "requests": len(records),
        "image_requests": len(image),
        "image_prompt_tokens": sorted({r["prompt_tokens"] for r in image}),
        "tokens": tokens,
        "wall_s": wall,
        "tok_per_s": tokens / wall,
        "p50_s": statistics.median(latencies),
        "p95_s": pct(latencies, 0.95),
        "text_p95_s": pct([r["latency"] for r in text], 0.95),
        "image_p95_s": pct([r["latency"] for r in image], 0.95),
        "text_ttft_p50_s": pct([r["first"] for r in text], 0.5),
        "text_ttft_p95_s": pct([r["first"] for r in text], 0.95),
        "text_ttft_during_image": len(during),
        "text_ttft_during_image_p50_s": pct([r["first"] for r in during], 0.5),
        "text_ttft_during_image_p95_s": pct([r["first"] for r in during], 0.95),
        "image_ttft_p50_s": pct([r["first"] for r in image], 0.5),
        "records": sorted(records, key=lambda r: r["n"]),
    }


# --------------------------------------------------------------------------- the server's own account
METRIC = re.compile(r"^(autoglm_\w+?)(?:\{([^}]*)\})? ([0-9.eE+-]+)$")


def scrape(url: str) -> dict[str, float]:
    import httpx

    out = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        m = METRIC.match(line)
        if m:
            out[m.group(1) + ("{" + m.group(2) + "}" if m.group(2) else "")] = float(m.group(3))
    return out


def engine_account(before: dict[str, float], after: dict[str, float]) -> dict:
    """Seconds the engine spent in prefills by modality, image preprocessing, and the mean decode batch."""

    def d(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    steps = d("autoglm_batch_size_count")
    return {
        "image_prefill_s": d('autoglm_prefill_seconds_sum{modality="image"}'),
        "image_prefills": d('autoglm_prefill_seconds_count{modality="image"}'),
        "text_prefill_s": d('autoglm_prefill_seconds_sum{modality="text"}'),
        "image_preprocess_s": d("autoglm_image_preprocess_seconds_sum"),
        "decode_steps": steps,
        "mean_decode_batch": d("autoglm_batch_size_sum") / steps if steps else 0.0,
    }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), the work done whatever the machine's load."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- orchestration
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("server did not become ready")


def start(kind: str, args: argparse.Namespace, model_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    if kind == "baseline":
        cmd = [sys.executable, __file__, "--serve-baseline", model_dir, "--port", str(port)]
        cmd += ["--device", args.device, "--dtype", args.dtype, "--threads", str(args.threads)]
        cmd += ["--max-pixels", str(args.max_pixels)]
    else:
        cmd = [sys.executable, "-m", "autoglm_server"]
        env.update(
            AUTOGLM_MODEL_DIR=model_dir,
            AUTOGLM_SERVED_MODEL_NAME="tiny-glm4v",
            AUTOGLM_HOST="127.0.0.1",
            AUTOGLM_PORT=str(port),
            AUTOGLM_DEVICE=args.device,
            AUTOGLM_DTYPE=args.dtype,
            AUTOGLM_THREADS=str(args.threads),
            AUTOGLM_MAX_PIXELS=str(args.max_pixels),
            AUTOGLM_MAX_BATCH_SIZE=str(args.max_batch_size),
            AUTOGLM_MAX_WAITING="1024",
            AUTOGLM_LOG_LEVEL="warning",
        )
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="an existing vision-language model directory (default: make the tiny one)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--min-requests", type=int, default=8, help="per level (a client sends more when few)")
    parser.add_argument(
        "--image-every", type=int, default=4, help="every Nth request carries a screenshot (0: none, text only)"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-pixels", type=int, default=5_000_000, help="images resized down to this (both servers)")
    parser.add_argument("--json", help="also write the results (with every request's timings) here")
    parser.add_argument("--serve-baseline", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.port, args.device, args.dtype, args.threads, args.max_pixels)
        return 0

    from autoglm_server.devtools import make_random_vlm, phone_screenshot_png

    levels = [int(c) for c in args.clients.split(",")]
    per_client = {c: max(args.requests_per_client, math.ceil(args.min_requests / c)) for c in levels}
    # a distinct screenshot for every image request of a level (the same set for both servers)
    count = max(math.ceil(c * per_client[c] / args.image_every) for c in levels) if args.image_every else 0
    t0 = time.perf_counter()
    pngs = [phone_screenshot_png(seed=i) for i in range(count)]
    images = ["data:image/png;base64," + base64.b64encode(p).decode() for p in pngs]
    print(
        f"{count} screenshots 1080x2400, {statistics.mean(map(len, pngs or [b''])) / 1e6:.2f} MB PNG, "
        f"{statistics.mean(map(len, images or [''])) / 1e6:.2f} MB base64 each ({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="vlm-bench-") as tmp:
        model_dir = args.model_dir or str(make_random_vlm(Path(tmp) / "tiny-glm4v"))
        results: dict[str, list[dict]] = {"baseline": [], "autoglm": []}
        servers = {kind: start(kind, args, model_dir) for kind in results}
        load = [os.getloadavg()[0]]
        try:
            # interleaved per level, so that both servers see the same background load on this machine
            for clients in levels:
                for kind, (proc, url) in servers.items():
                    before = scrape(url) if kind == "autoglm" else {}
                    cpu0 = cpu_seconds(proc.pid)
                    r = asyncio.run(
                        run_level(
                            url, kind, "tiny-glm4v", clients, per_client[clients], args.max_tokens,
                            args.image_every, images,
                        )
                    )  # fmt: skip
                    cpu1 = cpu_seconds(proc.pid)
                    r["server_cpu_s"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
                    if kind == "autoglm":
                        r["engine"] = engine_account(before, scrape(url))
                    r["loadavg"] = os.getloadavg()[0]
                    load.append(r["loadavg"])
                    results[kind].append(r)
                    print(
                        f"{kind:9} clients={clients:3} requests={r['requests']} ({r['image_requests']} with images, "
                        f"prompt tokens {r['image_prompt_tokens']}) "
                        f"{r['tok_per_s']:7.1f} tok/s p50={r['p50_s']:.2f}s p95={r['p95_s']:.2f}s "
                        f"(text {fmt(r['text_p95_s'])}s, image {fmt(r['image_p95_s'])}s) "
                        f"text TTFT p50={fmt(r['text_ttft_p50_s'])}s p95={fmt(r['text_ttft_p95_s'])}s "
                        f"server CPU {fmt(r['server_cpu_s'])}s in {r['wall_s']:.1f}s, loadavg {r['loadavg']:.1f}",
                        flush=True,
                    )
                    if "engine" in r:
                        e = r["engine"]
                        print(
                            f"{'':9} engine: {e['image_prefills']:.0f} image prefills {e['image_prefill_s']:.1f}s, "
                            f"text prefills {e['text_prefill_s']:.1f}s, image preprocessing "
                            f"{e['image_preprocess_s']:.1f}s (pool), {e['decode_steps']:.0f} decode steps, "
                            f"mean batch {e['mean_decode_batch']:.1f}; "
                            f"wall {r['wall_s']:.1f}s",
                            flush=True,
                        )
        finally:
            for proc, _url in servers.values():
                proc.terminate()
                proc.wait(60)
    print()
    mix = f"every {args.image_every}th request a 1080x2400 screenshot" if args.image_every else "text only"
    print(
        f"model: {args.model_dir or 'random tiny GLM-4.1V'}, device {args.device}, dtype {args.dtype}, "
        f"threads {args.threads or 'default'}, "
        f"max_tokens {args.max_tokens}, {mix}; load average {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs"
    )
    print(
        "| clients | requests (images) | baseline tok/s | autoglm tok/s | ratio "
        "| baseline P50/P95 (s) | autoglm P50/P95 (s) | server CPU s, baseline / autoglm |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for base, ours in zip(results["baseline"], results["autoglm"], strict=True):
        print(
            f"| {base['clients']} | {base['requests']} ({base['image_requests']}) | {base['tok_per_s']:.1f} | "
            f"{ours['tok_per_s']:.1f} | {ours['tok_per_s'] / base['tok_per_s']:.2f}x | "
            f"{base['p50_s']:.2f} / {base['p95_s']:.2f} | {ours['p50_s']:.2f} / {ours['p95_s']:.2f} | "
            f"{fmt(base['server_cpu_s'])} / {fmt(ours['server_cpu_s'])} |"
        )
    print()
    print("Time to first token of the text requests (s). The baseline does not stream: its TTFT is its latency.")
    print(
        "| clients | baseline P50 / P95 | autoglm P50 / P95 "
        "| autoglm, while an image request waited for its first token: P50 / P95 (n) |"
    )
    print("|---:|---:|---:|---:|")
    for base, ours in zip(results["baseline"], results["autoglm"], strict=True):
        print(
            f"| {base['clients']} | {fmt(base['text_ttft_p50_s'])} / {fmt(base['text_ttft_p95_s'])} | "
            f"{fmt(ours['text_ttft_p50_s'])} / {fmt(ours['text_ttft_p95_s'])} | "
            f"{fmt(ours['text_ttft_during_image_p50_s'])} / {fmt(ours['text_ttft_during_image_p95_s'])} "
            f"({ours['text_ttft_during_image']}) |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
