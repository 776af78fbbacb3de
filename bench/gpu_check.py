"""Steps of bench/gpu_check.sh that run Python: GPU facts through the collection's NVML code, and the decode step.

    python bench/gpu_check.py facts OUT.json            # _nvml.gather_gpu_facts on real NVML, the CUDA gate and
                                                        # the memory plan of GLM-4.1V-9B / GLM-4.5V on these GPUs
    python bench/gpu_check.py decode MODEL_DIR OUT.json [--device cuda] [--steps 200]
                                                        # batch-1 decode step vs weight bytes / memory bandwidth

The collection's module_utils are loaded by path (no Ansible needed on the GPU machine). Prints a summary and
writes JSON. Exit status 1 when a check that must hold on a GPU does not (NVML sees no GPU, the gate refuses the
driver for the torch in use).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UTILS = ROOT / "plugins" / "module_utils"
CONFIGS = ROOT / "tests" / "unit" / "plugins" / "module_utils" / "model_configs"
H200_DATASHEET_BYTES_PER_S = 4.8e12


def load_util(name):
    """plugins/module_utils/<name>.py as a module, with the ansible_collections.autoglm.fleet package faked so its
    own imports of sibling module_utils resolve."""
    package = "ansible_collections.autoglm.fleet.plugins.module_utils"
    parts = package.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    full = "%s.%s" % (package, name)
    if full in sys.modules and getattr(sys.modules[full], "__file__", None):
        return sys.modules[full]
    spec = importlib.util.spec_from_file_location(full, UTILS / ("%s.py" % name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)
    return module


def facts(out_path):
    nvml = load_util("_nvml")
    cuda = load_util("_cuda_compat")
    plan = load_util("_memory_plan")
    result = {"gpu": nvml.gather_gpu_facts()}
    gpu = result["gpu"]
    print("gpu_facts: status %s, %d GPU(s), driver %s, NVML's CUDA %s" % (
        gpu["nvml_status"], gpu["gpu_count"], gpu.get("driver_version"), gpu.get("cuda_driver_version")))
    for g in gpu.get("gpus", []):
        print("  GPU %s %s %.1f GiB, compute %s, errors %s" % (g["index"], g["name"], g["memory_total_bytes"] / 2**30,
                                                               g["compute_capability"], g["errors"] or "none"))
    ok = gpu["nvml_status"] == "ok" and gpu["gpu_count"] > 0
    try:
        import torch

        torch_cuda = torch.version.cuda
        result["torch"] = {"version": torch.__version__, "cuda": torch_cuda,
                           "available": torch.cuda.is_available()}
    except ImportError as exc:
        torch_cuda = None
        result["torch"] = {"error": str(exc)}
    print("torch: %s" % result["torch"])
    if gpu.get("driver_version"):
        checks = {}
        for release in sorted({torch_cuda, "11.8", "12.8", "13.0"} - {None}):
            try:
                checks[release] = cuda.check_driver_cuda(gpu["driver_version"], release, allow_minor_compat=True)
            except cuda.CudaCompatError as exc:
                checks[release] = {"ok": False, "note": str(exc)}
            print("gate %s: %s" % (release, checks[release]["note"]))
        result["gate"] = checks
        if torch_cuda and not checks.get(torch_cuda, {}).get("ok"):
            ok = False
    if gpu.get("gpus"):
        plans = {}
        for name, settings in (("glm-4.1v-9b-thinking", {"max_model_len": 25480}),
                               ("glm-4.5v", {"max_model_len": 16384})):
            config = json.loads((CONFIGS / ("%s.json" % name)).read_text())
            p = plan.plan(config, gpu["gpus"], settings)
            plans[name] = {k: p[k] for k in ("fits", "message", "need_bytes", "usable_bytes", "max_memory")}
            print("memory plan %s: %s" % (name, p["message"]))
        result["memory_plans"] = plans
    Path(out_path).write_text(json.dumps(result, indent=2, default=str))
    return 0 if ok else 1


def copy_bandwidth(torch, device, size_bytes=4 * 2**30, repeats=10):
    """Device-to-device copy rate, counting the bytes read and written (as KINDS.md reports it)."""
    src = torch.empty(size_bytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    for _warm in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _rep in range(repeats):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000.0 / repeats
    del src, dst
    return 2 * size_bytes / seconds


def decode(model_dir, out_path, device, steps):
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    prompt = torch.randint(0, model.config.vocab_size, (1, 128), device=device)
    result = {"device": device, "dtype": str(dtype), "weight_bytes": weight_bytes,
              "parameters": sum(p.numel() for p in model.parameters()), "steps": steps}

    def run(n):
        cache = DynamicCache()
        with torch.inference_mode():
            out = model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
            token = out.logits[:, -1:].argmax(-1)
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _step in range(n):
                out = model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
                token = out.logits[:, -1:].argmax(-1)
            if device == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - t0) / n

    run(10)  # warm-up: kernels, allocator
    step = min(run(steps) for _try in range(3))
    result["step_seconds"] = step
    if device == "cuda":
        measured = copy_bandwidth(torch, device)
        result["copy_bytes_per_s"] = measured
        result["ideal_step_seconds_datasheet"] = weight_bytes / H200_DATASHEET_BYTES_PER_S
        result["ideal_step_seconds_measured"] = weight_bytes / measured
        result["ratio_datasheet"] = step / result["ideal_step_seconds_datasheet"]
        result["ratio_measured"] = step / result["ideal_step_seconds_measured"]
        print("decode: %.0f M parameters, %.2f GB of weights; batch-1 step %.3f ms; weight bytes / 4.8 TB/s = %.3f ms "
              "(ratio %.2fx, target <= 2x); / measured copy rate %.2f TB/s = %.3f ms (ratio %.2fx)"
              % (result["parameters"] / 1e6, weight_bytes / 1e9, step * 1e3,
                 result["ideal_step_seconds_datasheet"] * 1e3, result["ratio_datasheet"], measured / 1e12,
                 result["ideal_step_seconds_measured"] * 1e3, result["ratio_measured"]))
    else:
        print("decode on %s: %.0f M parameters, batch-1 step %.3f ms (no bandwidth ratio without a GPU)"
              % (device, result["parameters"] / 1e6, step * 1e3))
    Path(out_path).write_text(json.dumps(result, indent=2))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    f = sub.add_parser("facts")
    f.add_argument("out")
    d = sub.add_parser("decode")
    d.add_argument("model_dir")
    d.add_argument("out")
    d.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    d.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    if args.what == "facts":
        return facts(args.out)
    return decode(args.model_dir, args.out, args.device, args.steps)


if __name__ == "__main__":
    sys.exit(main())
