# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vLLM as the model server engine: our settings as `vllm serve` flags, as pure functions.

UNTESTED ON A GPU: vLLM needs one; the mapping is unit-tested, the image (containers/vllm) builds outside
`make test`, and nothing here has served a request yet (docs/gpu.md, "vLLM").

vllm_command() turns the settings model_serve gives our own server (AUTOGLM_* in the container, see
containers/model-server/README.md) into the argv of containers/vllm's entry point (which runs `vllm serve`)
and its environment, the way Open-AutoGLM's README starts vLLM for AutoGLM-Phone-9B:

    --served-model-name, --max-model-len, --limit-mm-per-prompt '{"image":N}',
    --mm-processor-kwargs '{"max_pixels":N}', --chat-template-content-format, --port, --dtype,
    --tensor-parallel-size (from the GPU count), --max-num-seqs, --gpu-memory-utilization

The API key never goes on argv (where `ps` and `docker inspect` show it): the role mounts it as a file and sets
AUTOGLM_API_KEY_FILE; the entry point reads it into VLLM_API_KEY, which vLLM reads when --api-key is absent.
Open-AutoGLM's `--allowed-local-media-path /` is never set (it lets a request read any file of the container).
"""

from __future__ import annotations

import json

HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
API_KEY_FILE = "/run/secrets/autoglm-api-key"
# Our server's metric -> vLLM's (V1 engine, vLLM 0.19), for dashboards and the rollout analysis. None: vLLM has no
# counterpart (its health is GET /health; HTTP errors are not counted by vLLM).
METRICS = {
    "autoglm_requests_running": "vllm:num_requests_running",
    "autoglm_requests_waiting": "vllm:num_requests_waiting",
    "autoglm_prompt_tokens_total": "vllm:prompt_tokens_total",
    "autoglm_generation_tokens_total": "vllm:generation_tokens_total",
    "autoglm_requests_total": "vllm:request_success_total",
    "autoglm_request_latency_seconds": "vllm:e2e_request_latency_seconds",
    "autoglm_time_to_first_token_seconds": "vllm:time_to_first_token_seconds",
    "autoglm_time_per_output_token_seconds": "vllm:inter_token_latency_seconds",
    "autoglm_errors_total": None,
    "autoglm_ready": None,
}
DEFAULTS = {
    "model_dir": "/models",
    "served_model_name": "",
    "port": 8000,
    "host": "0.0.0.0",  # noqa: S104 - the container listens on all its interfaces; Docker publishes the port
    "dtype": "auto",
    "max_model_len": 0,
    "max_batch_size": 16,
    "max_images_per_request": 10,
    "max_pixels": 5000000,
    "chat_template_content_format": "openai",
    "multimodal": True,
    "gpu_count": 1,
    # or: model_serve_gpus as it is and the host's GPU count (the gpu fact's gpu_count); gpu_count is then derived
    "gpus": None,
    "host_gpu_count": None,
    "gpu_memory_utilization": 0.9,
    "api_key": False,
    "allow_no_auth": False,
    "num_attention_heads": None,
}
DTYPES = ("auto", "bfloat16", "float16", "float32")
CONTENT_FORMATS = ("openai", "string")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class VllmSettingsError(ValueError):
    """A setting cannot be given to vLLM; the message names it and the fix."""


def gpu_count(selection, host_gpus):
    """How many GPUs model_serve_gpus gives the container: "all" (the host's count), a count, or a list."""
    if selection in (None, "all"):
        count = host_gpus
    elif isinstance(selection, list):
        count = len(selection)
    elif str(selection).isdigit():
        count = int(selection)
    else:
        raise VllmSettingsError("model_serve_gpus must be 'all', a count or a list of GPU ids, not %r" % (selection,))
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise VllmSettingsError("vLLM needs at least one GPU (model_serve_gpus %r on a host with %r)"
                                % (selection, host_gpus))
    return count


def _positive_int(s, key, errors, allow_zero=False):
    value = s[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        errors.append("%s must be %s integer (got %r)" % (key, "a non-negative" if allow_zero else "a positive",
                                                          value))
        return False
    return True


def vllm_command(settings):
    """{argv, env, health_path, metrics_path, port} for containers/vllm's entry point; raises VllmSettingsError
    listing every bad setting at once."""
    unknown = sorted(set(settings or {}) - set(DEFAULTS))
    if unknown:
        raise VllmSettingsError("unknown vLLM setting(s): %s; known: %s"
                                % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    s = dict(DEFAULTS)
    s.update({k: v for k, v in (settings or {}).items() if v is not None})
    errors = []
    if s["gpus"] is not None:
        try:
            s["gpu_count"] = gpu_count(s["gpus"], s["host_gpu_count"])
        except VllmSettingsError as exc:
            errors.append(str(exc))
            s["gpu_count"] = 1
    for key in ("port", "max_batch_size", "max_pixels", "gpu_count"):
        _positive_int(s, key, errors)
    for key in ("max_model_len", "max_images_per_request"):
        _positive_int(s, key, errors, allow_zero=True)
    if s["dtype"] not in DTYPES:
        errors.append("dtype must be one of %s (got %r)" % (", ".join(DTYPES), s["dtype"]))
    if s["chat_template_content_format"] not in CONTENT_FORMATS:
        errors.append("chat_template_content_format must be one of %s (got %r)"
                      % (", ".join(CONTENT_FORMATS), s["chat_template_content_format"]))
    util = s["gpu_memory_utilization"]
    if isinstance(util, bool) or not isinstance(util, (int, float)) or not 0 < util <= 1:
        errors.append("gpu_memory_utilization must be a fraction in (0, 1] (got %r)" % (util,))
    heads = s["num_attention_heads"]
    if isinstance(heads, int) and heads > 0 and isinstance(s["gpu_count"], int) and s["gpu_count"] > 0 \
            and heads % s["gpu_count"]:
        errors.append("vLLM splits the %s attention heads evenly over the GPUs (tensor parallelism): %s GPUs do not "
                      "divide them; choose a GPU count that does (model_serve_gpus)" % (heads, s["gpu_count"]))
    if not s["api_key"] and not s["allow_no_auth"] and s["host"] not in LOOPBACK:
        errors.append("no API key, and vLLM would listen on %s: set the API key (model_serve_api_key), or accept an "
                      "open server explicitly (allow_no_auth)" % s["host"])
    if not str(s["model_dir"]).startswith("/"):
        errors.append("model_dir must be an absolute path in the container (got %r)" % (s["model_dir"],))
    if errors:
        raise VllmSettingsError("vLLM settings: " + "; ".join(errors))

    argv = [s["model_dir"], "--host", s["host"], "--port", str(s["port"]), "--dtype", s["dtype"],
            "--tensor-parallel-size", str(s["gpu_count"]), "--max-num-seqs", str(s["max_batch_size"]),
            "--gpu-memory-utilization", str(util)]
    if s["served_model_name"]:
        argv += ["--served-model-name", s["served_model_name"]]
    if s["max_model_len"]:
        argv += ["--max-model-len", str(s["max_model_len"])]
    if s["multimodal"]:
        argv += ["--limit-mm-per-prompt", json.dumps({"image": s["max_images_per_request"]}, separators=(",", ":")),
                 "--mm-processor-kwargs", json.dumps({"max_pixels": s["max_pixels"]}, separators=(",", ":"))]
    argv += ["--chat-template-content-format", s["chat_template_content_format"]]
    env = {"AUTOGLM_API_KEY_FILE": API_KEY_FILE} if s["api_key"] else {}
    return {"argv": argv, "env": env, "health_path": HEALTH_PATH, "metrics_path": METRICS_PATH, "port": s["port"],
            "metrics": dict(METRICS)}
