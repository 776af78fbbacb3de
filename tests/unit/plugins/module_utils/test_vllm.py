"""Our serving settings as vLLM flags (the mapping only: vLLM itself needs a GPU and is untested here)."""

from __future__ import annotations

import json

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils._vllm import (
    API_KEY_FILE,
    METRICS,
    VllmSettingsError,
    gpu_count,
    vllm_command,
)


def flags(argv):
    """--flag value pairs of an argv after the model path."""
    assert not argv[0].startswith("--")
    pairs = argv[1:]
    assert len(pairs) % 2 == 0
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


def test_open_autoglm_command_line():
    """Open-AutoGLM's documented vLLM flags for AutoGLM-Phone-9B, from our settings."""
    out = vllm_command({"served_model_name": "autoglm-phone-9b-multilingual", "max_model_len": 25480,
                        "max_images_per_request": 10, "max_pixels": 5000000, "chat_template_content_format": "string",
                        "dtype": "bfloat16", "api_key": True, "gpus": "all", "host_gpu_count": 2,
                        "num_attention_heads": 32})
    assert out["argv"][0] == "/models"
    f = flags(out["argv"])
    assert f["--served-model-name"] == "autoglm-phone-9b-multilingual"
    assert f["--max-model-len"] == "25480"
    assert json.loads(f["--limit-mm-per-prompt"]) == {"image": 10}
    assert json.loads(f["--mm-processor-kwargs"]) == {"max_pixels": 5000000}
    assert f["--chat-template-content-format"] == "string"
    assert (f["--dtype"], f["--tensor-parallel-size"], f["--port"]) == ("bfloat16", "2", "8000")
    assert f["--host"] == "0.0.0.0"  # noqa: S104 - the container's address; Docker publishes the port
    assert (f["--max-num-seqs"], f["--gpu-memory-utilization"]) == ("16", "0.9")
    assert (out["health_path"], out["metrics_path"], out["port"]) == ("/health", "/metrics", 8000)


def test_the_key_is_never_on_argv():
    out = vllm_command({"api_key": True})
    assert out["env"] == {"AUTOGLM_API_KEY_FILE": API_KEY_FILE}
    assert not [a for a in out["argv"] if "api-key" in a or "api_key" in a]
    assert "--allowed-local-media-path" not in out["argv"]


def test_defaults_leave_out_what_vllm_should_decide():
    f = flags(vllm_command({"api_key": True})["argv"])
    assert "--served-model-name" not in f and "--max-model-len" not in f
    text = flags(vllm_command({"api_key": True, "multimodal": False})["argv"])
    assert "--limit-mm-per-prompt" not in text and "--mm-processor-kwargs" not in text


@pytest.mark.parametrize(("selection", "host", "count"), [("all", 4, 4), (2, 4, 2), ("1", 4, 1), ([0, 3], 4, 2),
                                                          (["GPU-a"], None, 1)])
def test_gpu_count(selection, host, count):
    assert gpu_count(selection, host) == count


def test_every_bad_setting_at_once():
    with pytest.raises(VllmSettingsError) as info:
        vllm_command({"dtype": "int8", "port": 0, "chat_template_content_format": "raw", "max_batch_size": -1,
                      "gpu_memory_utilization": 1.2, "gpus": 3, "num_attention_heads": 32, "model_dir": "models"})
    msg = str(info.value)
    for part in ("dtype must be one of auto, bfloat16, float16, float32 (got 'int8')",
                 "port must be a positive integer (got 0)", "chat_template_content_format must be one of",
                 "max_batch_size must be a positive integer (got -1)", r"gpu_memory_utilization must be a fraction",
                 "the 32 attention heads evenly over the GPUs (tensor parallelism): 3 GPUs do not divide them",
                 "no API key, and vLLM would listen on 0.0.0.0", "model_dir must be an absolute path"):
        assert part in msg, part


@pytest.mark.parametrize(
    ("settings", "match"),
    [({"gpus": "all", "host_gpu_count": 0}, "vLLM needs at least one GPU"),
     ({"gpus": "several", "api_key": True}, "model_serve_gpus must be 'all', a count or a list"),
     ({"api_key": True, "max_num_seqs": 8}, r"unknown vLLM setting\(s\): max_num_seqs")],
)
def test_errors(settings, match):
    with pytest.raises(VllmSettingsError, match=match):
        vllm_command(settings)


def test_open_server_only_on_loopback_or_when_asked():
    assert vllm_command({"host": "127.0.0.1"})["env"] == {}
    assert vllm_command({"allow_no_auth": True})["env"] == {}


def test_metric_names():
    assert METRICS["autoglm_requests_running"] == "vllm:num_requests_running"
    assert METRICS["autoglm_time_to_first_token_seconds"] == "vllm:time_to_first_token_seconds"
    assert all(v is None or v.startswith("vllm:") for v in METRICS.values())
