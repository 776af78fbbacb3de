"""Configuration: defaults < file < environment, validation messages that name the fix."""

from __future__ import annotations

import json

import pytest
from autoglm_server.config import ConfigError, load_settings


def test_defaults_and_env(tmp_path):
    s = load_settings(
        env={
            "AUTOGLM_MODEL_DIR": str(tmp_path),
            "AUTOGLM_MAX_BATCH_SIZE": "4",
            "AUTOGLM_WARMUP": "no",
            "AUTOGLM_HOST": "127.0.0.1",
        }
    )
    assert s.max_batch_size == 4
    assert (s.max_images_per_request, s.max_pixels, s.chat_template_content_format) == (10, 5_000_000, "openai")
    assert s.warmup is False
    assert s.port == 8000
    assert s.model_name == tmp_path.name


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_file_then_env_wins(tmp_path, suffix):
    values = {
        "model_dir": str(tmp_path),
        "max_waiting": 7,
        "served_model_name": "from-file",
        "port": 9000,
        "allow_no_auth": True,
    }
    path = tmp_path / f"server{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(values))
    else:
        path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    s = load_settings(env={"AUTOGLM_CONFIG": str(path), "AUTOGLM_PORT": "9100"})
    assert (s.max_waiting, s.model_name, s.port) == (7, "from-file", 9100)


def test_api_key_file(tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    s = load_settings(env={"AUTOGLM_MODEL_DIR": str(tmp_path), "AUTOGLM_API_KEY_FILE": str(key)})
    assert s.api_key == "s3cret"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "AUTOGLM_MODEL_DIR"),
        ({"AUTOGLM_MODEL_DIR": "/nonexistent/weights"}, "is not a directory"),
        ({"AUTOGLM_MAX_BATCH_SIZE": "0"}, "max_batch_size must be at least 1"),
        ({"AUTOGLM_MAX_BATCH_SIZE": "many"}, "AUTOGLM_MAX_BATCH_SIZE='many' is not a valid int"),
        ({"AUTOGLM_DEVICE": "tpu"}, "device must be one of auto, cpu, cuda"),
        ({"AUTOGLM_WARMUP": "maybe"}, "not a valid bool"),
        ({"AUTOGLM_DRAIN_TIMEOUT": "-1"}, "drain_timeout must not be negative"),
        ({"AUTOGLM_QUANTIZATION": "int8", "AUTOGLM_DEVICE": "cuda"}, "CPU only"),
        ({"AUTOGLM_API_KEY_FILE": "/nonexistent/key"}, "AUTOGLM_API_KEY_FILE"),
        ({"AUTOGLM_CONFIG": "/nonexistent/server.toml"}, "Cannot read config file"),
        ({"AUTOGLM_MAX_PIXELS": "60000000"}, "max_pixels (60000000) must not exceed max_image_pixels"),
        ({"AUTOGLM_ALLOWED_IMAGE_HOSTS": "cdn.example,http://x/"}, "allowed_image_hosts must list host names"),
        (
            {"AUTOGLM_CHAT_TEMPLATE_CONTENT_FORMAT": "auto"},
            "chat_template_content_format must be one of openai, string",
        ),
        ({"AUTOGLM_MAX_REQUEST_BYTES": "0"}, "max_request_bytes must be at least 1"),
        ({"AUTOGLM_MAX_IMAGES_PER_REQUEST": "-1"}, "max_images_per_request must not be negative"),
    ],
)
def test_invalid(tmp_path, env, fragment):
    if "AUTOGLM_MODEL_DIR" not in env and fragment != "AUTOGLM_MODEL_DIR":
        env = {"AUTOGLM_MODEL_DIR": str(tmp_path), **env}
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("max_waiting = [", "not valid"), ("nonsense = 1", "Unknown setting 'nonsense'"), ("port = 'x'", "valid int")],
)
def test_invalid_file(tmp_path, content, fragment):
    path = tmp_path / "server.toml"
    path.write_text(f"model_dir = {json.dumps(str(tmp_path))}\n{content}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(env={"AUTOGLM_CONFIG": str(path)})
    assert fragment in str(info.value)


def test_no_api_key_is_refused_off_loopback(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(env={"AUTOGLM_MODEL_DIR": str(tmp_path)})
    message = str(info.value)
    assert "no API key" in message and "AUTOGLM_API_KEY_FILE" in message and "AUTOGLM_ALLOW_NO_AUTH=true" in message
    open_server = load_settings(env={"AUTOGLM_MODEL_DIR": str(tmp_path), "AUTOGLM_ALLOW_NO_AUTH": "true"})
    assert open_server.host == "0.0.0.0" and not open_server.api_key  # noqa: S104 (the default it reports)
    assert load_settings(env={"AUTOGLM_MODEL_DIR": str(tmp_path), "AUTOGLM_HOST": "127.0.0.1"}).host == "127.0.0.1"
    keyed = load_settings(env={"AUTOGLM_MODEL_DIR": str(tmp_path), "AUTOGLM_API_KEY": "k"})
    assert keyed.api_key == "k"


def test_allowed_image_hosts_are_parsed(tmp_path):
    s = load_settings(
        env={
            "AUTOGLM_MODEL_DIR": str(tmp_path),
            "AUTOGLM_HOST": "::1",
            "AUTOGLM_ALLOWED_IMAGE_HOSTS": " CDN.example , 10.0.0.5",
        }
    )
    assert s.image_hosts == ["cdn.example", "10.0.0.5"]


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"AUTOGLM_QUANTIZATION": "bnb-4bit"}, "needs AUTOGLM_DEVICE=cuda, not auto"),
        ({"AUTOGLM_QUANTIZATION": "bnb-8bit", "AUTOGLM_DEVICE": "cpu"}, "on CPU use int8"),
        ({"AUTOGLM_QUANTIZATION": "bnb-4bit", "AUTOGLM_DEVICE": "cuda", "AUTOGLM_DTYPE": "float32"}, "bfloat16"),
        ({"AUTOGLM_QUANTIZATION": "int8", "AUTOGLM_DEVICE": "cuda"}, "on CUDA use bnb-8bit"),
        ({"AUTOGLM_MAX_MEMORY": "20GiB"}, "is not JSON"),
        ({"AUTOGLM_MAX_MEMORY": '{"gpu0": 5}'}, "not a GPU index with a positive number of bytes"),
        ({"AUTOGLM_MAX_MEMORY": "{}"}, "JSON object of GPU index to bytes"),
    ],
)
def test_quantization_and_placement_combinations(tmp_path, env, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(env={"AUTOGLM_MODEL_DIR": str(tmp_path), "AUTOGLM_HOST": "127.0.0.1", **env})
    assert fragment in str(info.value)


def test_load_placement(tmp_path):
    import torch
    from autoglm_server.engine import load_placement

    def settings(**env):
        return load_settings(env={"AUTOGLM_MODEL_DIR": str(tmp_path), "AUTOGLM_HOST": "127.0.0.1", **env})

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert load_placement(settings(), cpu, 0) == {}
    assert load_placement(settings(AUTOGLM_DEVICE="cuda"), gpu, 1) == {}
    assert load_placement(settings(AUTOGLM_DEVICE="cuda"), gpu, 4) == {"device_map": "auto"}
    planned = settings(AUTOGLM_DEVICE="cuda", AUTOGLM_MAX_MEMORY='{"0": 1000, "1": 2000}')
    assert load_placement(planned, gpu, 2) == {"device_map": "auto", "max_memory": {0: 1000, 1: 2000}}
    with pytest.raises(RuntimeError, match="names GPU \\[1\\] but torch sees 1"):
        load_placement(planned, gpu, 1)
    four = load_placement(settings(AUTOGLM_DEVICE="cuda", AUTOGLM_QUANTIZATION="bnb-4bit"), gpu, 1)
    assert four["device_map"] == "auto"
    assert four["quantization_config"]["load_in_4bit"] and four["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    assert four["quantization_config"]["bnb_4bit_compute_dtype"] is torch.bfloat16
    eight = load_placement(settings(AUTOGLM_DEVICE="cuda", AUTOGLM_QUANTIZATION="bnb-8bit"), gpu, 2)
    assert eight == {"quantization_config": {"load_in_8bit": True}, "device_map": "auto"}
