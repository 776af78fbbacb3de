"""Serving benchmark: autoglm_server (continuous batching) against the guides' design (the baseline).

Baseline: a FastAPI `/generate` endpoint that runs `model.generate` for one request at a time (a
semaphore of 1), as the deployment guides show. Both servers run as separate processes on 127.0.0.1
with the same random-init model, the same dtype and the same number of torch threads; clients send
greedy requests of a fixed length (EOS ignored) at each concurrency level.

    python bench/serve_bench.py                      # CPU, ~30M-parameter model, 1/8/32 clients
    python bench/serve_bench.py --size 1b --device cuda   # GPU, ~1B parameters in bf16

Prints generated tokens/s and P50/P95 latency per concurrency level and the ratios against the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "containers" / "model-server" / "src"
sys.path.insert(0, str(SRC))


# --------------------------------------------------------------------------- the baseline server
class Body(BaseModel):
    prompt: str
    max_tokens: int = 64


def serve_baseline(model_dir: str, port: int, device: str, dtype: str, threads: int) -> None:
    import torch
    import uvicorn
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch_dtype).to(device).eval()
    semaphore = asyncio.Semaphore(1)
    app = FastAPI()

    def generate(body: Body) -> dict:
        ids = tokenizer(body.prompt, return_tensors="pt").to(device)
        with torch.inference_mode():
            out = model.generate(
                **ids,
                max_new_tokens=body.max_tokens,
                min_new_tokens=body.max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, ids["input_ids"].shape[1] :]
        return {"text": tokenizer.decode(new, skip_special_tokens=True), "completion_tokens": int(new.numel())}

    @app.get("/health/ready")
    async def ready() -> dict:
        return {"status": "ready"}

    @app.post("/generate")
    async def generate_endpoint(body: Body) -> dict:
        async with semaphore:
            return await run_in_threadpool(generate, body)

    generate(Body(prompt="warm up", max_tokens=4))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --------------------------------------------------------------------------- clients
PROMPTS = [
    "The fleet exists to serve the model.",
    "Hello world! How are you today?",
    "Quick brown foxes jump over lazy dogs while the scheduler",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation",
]


async def run_level(url: str, kind: str, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    import httpx

    latencies: list[float] = []
    tokens = 0
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        for i in counter:
            prompt = PROMPTS[i % len(PROMPTS)]
            if kind == "baseline":
                body = {"prompt": prompt, "max_tokens": max_tokens}
                path = "/generate"
            else:
                body = {
                    "model": model,
                    "prompt": prompt,
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "ignore_eos": True,
                }
                path = "/v1/completions"
            t0 = time.perf_counter()
            r = await client.post(url + path, json=body)
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            data = r.json()
            tokens += data["completion_tokens"] if kind == "baseline" else data["usage"]["completion_tokens"]

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=3600, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _i in range(clients)))
        wall = time.perf_counter() - t0
    latencies.sort()
    p95_index = max(0, round(0.95 * len(latencies)) - 1)
    return {
        "clients": clients,
        "requests": requests,
        "tokens": tokens,
        "wall_s": wall,
        "tok_per_s": tokens / wall,
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[p95_index],
    }


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


def child_env(environ: dict[str, str]) -> dict[str, str]:
    """The servers' environment: the server package first on PYTHONPATH, then whatever it already holds (wheels
    carried to a GPU machine under --target, for instance: bench/gpu_check.sh)."""
    path = os.pathsep.join(p for p in (str(SRC), environ.get("PYTHONPATH")) if p)
    return {**environ, "PYTHONPATH": path}


def start(kind: str, args: argparse.Namespace, model_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = child_env(os.environ)
    if kind == "baseline":
        cmd = [sys.executable, __file__, "--serve-baseline", model_dir, "--port", str(port)]
        cmd += ["--device", args.device, "--dtype", args.dtype, "--threads", str(args.threads)]
    else:
        cmd = [sys.executable, "-m", "autoglm_server"]
        env.update(
            AUTOGLM_MODEL_DIR=model_dir,
            AUTOGLM_HOST="127.0.0.1",
            AUTOGLM_PORT=str(port),
            AUTOGLM_DEVICE=args.device,
            AUTOGLM_DTYPE=args.dtype,
            AUTOGLM_THREADS=str(args.threads),
            AUTOGLM_MAX_BATCH_SIZE=str(args.max_batch_size),
            AUTOGLM_MAX_WAITING="1024",
            AUTOGLM_LOG_LEVEL="warning",
        )
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="an existing model directory (default: make a random one)")
    parser.add_argument("--size", default="bench", help="random model size from autoglm_server.devtools.SIZES")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--min-requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--serve-baseline", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.port, args.device, args.dtype, args.threads)
        return 0

    from autoglm_server.devtools import make_random_model

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        model_dir = args.model_dir or str(make_random_model(Path(tmp) / f"random-{args.size}", args.size))
        levels = [int(c) for c in args.clients.split(",")]
        results: dict[str, list[dict]] = {"baseline": [], "autoglm": []}
        servers = {kind: start(kind, args, model_dir) for kind in results}
        try:
            # interleaved per level, so that both servers see the same background load on this machine
            for clients in levels:
                requests = max(args.min_requests, clients * args.requests_per_client)
                for kind, (_proc, url) in servers.items():
                    r = asyncio.run(run_level(url, kind, "random-" + args.size, clients, requests, args.max_tokens))
                    results[kind].append(r)
                    print(
                        f"{kind:9} clients={clients:3} {r['tok_per_s']:8.1f} tok/s "
                        f"p50={r['p50_s']:.3f}s p95={r['p95_s']:.3f}s",
                        flush=True,
                    )
        finally:
            for proc, _url in servers.values():
                proc.terminate()
                proc.wait(60)
    print()
    print(f"model: random {args.size}, device {args.device}, dtype {args.dtype}, max_tokens {args.max_tokens}")
    print("| clients | baseline tok/s | autoglm tok/s | ratio | baseline P50/P95 (s) | autoglm P50/P95 (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for base, ours in zip(results["baseline"], results["autoglm"], strict=True):
        print(
            f"| {base['clients']} | {base['tok_per_s']:.1f} | {ours['tok_per_s']:.1f} | "
            f"{ours['tok_per_s'] / base['tok_per_s']:.2f}x | {base['p50_s']:.2f} / {base['p95_s']:.2f} | "
            f"{ours['p50_s']:.2f} / {ours['p95_s']:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
