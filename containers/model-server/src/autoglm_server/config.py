"""Server configuration: defaults, then an optional TOML/JSON file, then environment variables.

Every setting has an environment variable ``AUTOGLM_<NAME>`` (upper case). ``AUTOGLM_CONFIG`` names an
optional config file (``.toml`` or ``.json``) whose keys are the lower-case names below.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "AUTOGLM_"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it and the fix."""


@dataclass
class Settings:
    model_dir: str = ""
    served_model_name: str = ""
    host: str = "0.0.0.0"  # noqa: S104 - a container listens on all its interfaces
    port: int = 8000
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    quantization: str = "none"  # none | int8 (CPU) | bnb-8bit | bnb-4bit (bitsandbytes, CUDA)
    # The weight bytes a device map may put on each GPU, as JSON {"0": bytes, "1": bytes} (the model_serve role sets
    # it from its memory plan, leaving room for the KV cache); empty: one GPU, or accelerate's own split over all.
    max_memory: str = ""
    max_batch_size: int = 16
    max_waiting: int = 64
    max_model_len: int = 0  # 0: the model's max_position_embeddings
    default_max_tokens: int = 16
    max_stop_sequences: int = 4
    drain_timeout: float = 30.0
    retry_after: int = 1
    warmup: bool = True
    threads: int = 0  # 0: torch default
    api_key: str = field(default="", repr=False)
    api_key_file: str = ""
    # Without a key the server refuses to listen on anything but loopback, unless this says otherwise.
    allow_no_auth: bool = False
    log_level: str = "info"
    # The API audit trail: one JSON line per request on stdout (time, client, key id, endpoint, model, status,
    # tokens, images, latency); the prompt text only when audit_log_prompts is on.
    audit_log: bool = True
    audit_log_prompts: bool = False
    # Requests: refused before any work (413/400, each message names its setting).
    max_request_bytes: int = 32 * 1024 * 1024
    max_messages: int = 512
    max_prompt_chars: int = 1_000_000
    max_stop_length: int = 256
    # Seconds a request may wait for its answer (queue + generation) before it gets 504.
    request_timeout: float = 600.0
    # Consecutive failed engine steps after which the engine is marked failed (/health/live turns 503).
    max_consecutive_failures: int = 3
    # Threads that decode images and run the vision tower for requests with images (off the event loop and the
    # engine thread); text-only requests are tokenized on a pool of their own.
    preprocess_threads: int = 2
    # Vision-language models (the knobs Open-AutoGLM's vLLM command line sets, under our names):
    # --limit-mm-per-prompt '{"image":N}', --mm_processor_kwargs '{"max_pixels":N}',
    # --chat-template-content-format string|openai.
    max_images_per_request: int = 10
    max_pixels: int = 5_000_000
    max_image_pixels: int = 50_000_000
    max_image_bytes: int = 20 * 1024 * 1024
    allowed_image_hosts: str = ""
    image_fetch_timeout: float = 10.0
    chat_template_content_format: str = "openai"

    @property
    def model_name(self) -> str:
        return self.served_model_name or Path(self.model_dir.rstrip("/")).name or "model"

    @property
    def image_hosts(self) -> list[str]:
        """Host names remote image URLs may come from (lower case); empty: remote URLs are refused."""
        return [h.strip().lower() for h in self.allowed_image_hosts.split(",")] if self.allowed_image_hosts else []


CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "dtype": ("auto", "float32", "bfloat16", "float16"),
    "quantization": ("none", "int8", "bnb-8bit", "bnb-4bit"),
    "log_level": ("critical", "error", "warning", "info", "debug", "trace"),
    "chat_template_content_format": ("openai", "string"),
}
POSITIVE = (
    "port",
    "max_batch_size",
    "max_waiting",
    "default_max_tokens",
    "max_stop_sequences",
    "retry_after",
    "max_request_bytes",
    "max_messages",
    "max_prompt_chars",
    "max_stop_length",
    "max_consecutive_failures",
    "preprocess_threads",
    "max_pixels",
    "max_image_pixels",
    "max_image_bytes",
)
GREATER_THAN_ZERO = ("request_timeout", "image_fetch_timeout")
NON_NEGATIVE = ("max_model_len", "threads", "drain_timeout", "max_images_per_request")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def _coerce(name: str, kind: type, value: Any, source: str) -> Any:
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in TRUE:
                return True
            if text in FALSE:
                return False
            raise ValueError(value)
        if kind is int and isinstance(value, bool):
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name}={value!r} is not a valid {kind.__name__}; fix the value.") from None


def _read_file(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path} (AUTOGLM_CONFIG): {exc.strerror}.") from None
    try:
        data = json.loads(raw) if p.suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} (AUTOGLM_CONFIG) is not valid {p.suffix or 'TOML'}: {exc}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} (AUTOGLM_CONFIG) must hold a table/object of settings.")
    return data


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults < config file < environment < keyword overrides, then validate."""
    env = dict(os.environ if env is None else env)
    kinds = {f.name: type(f.default) for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    config_file = env.get(ENV_PREFIX + "CONFIG", "")
    if config_file:
        for key, value in _read_file(config_file).items():
            if key not in kinds:
                raise ConfigError(f"Unknown setting {key!r} in {config_file}; known settings: {', '.join(kinds)}.")
            values[key] = _coerce(key, kinds[key], value, config_file)
    for key, kind in kinds.items():
        if ENV_PREFIX + key.upper() in env:
            values[key] = _coerce(ENV_PREFIX + key.upper(), kind, env[ENV_PREFIX + key.upper()], "environment")
    for key, value in overrides.items():
        if key not in kinds:
            raise ConfigError(f"Unknown setting {key!r}.")
        values[key] = _coerce(key, kinds[key], value, "setting")
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    errors = []
    if not s.model_dir:
        errors.append("model_dir is required: set AUTOGLM_MODEL_DIR to the local directory holding the weights")
    elif not Path(s.model_dir).is_dir():
        errors.append(f"model_dir {s.model_dir!r} is not a directory: set AUTOGLM_MODEL_DIR to the weights directory")
    for name, choices in CHOICES.items():
        if getattr(s, name) not in choices:
            errors.append(f"{name} must be one of {', '.join(choices)} (got {getattr(s, name)!r})")
    for name in POSITIVE:
        if getattr(s, name) < 1:
            errors.append(f"{name} must be at least 1 (got {getattr(s, name)})")
    for name in GREATER_THAN_ZERO:
        if getattr(s, name) <= 0:
            errors.append(f"{name} must be greater than 0 (got {getattr(s, name)})")
    for name in NON_NEGATIVE:
        if getattr(s, name) < 0:
            errors.append(f"{name} must not be negative (got {getattr(s, name)})")
    if s.quantization == "int8" and s.device == "cuda":
        errors.append(
            "quantization=int8 is for CPU only: on CUDA use bnb-8bit or bnb-4bit, or set AUTOGLM_DEVICE=cpu"
        )
    if s.quantization.startswith("bnb-") and s.device != "cuda":
        errors.append(
            f"quantization={s.quantization} (bitsandbytes) needs AUTOGLM_DEVICE=cuda, not {s.device}: "
            "on CPU use int8"
        )
    if s.quantization.startswith("bnb-") and s.dtype == "float32":
        errors.append(f"quantization={s.quantization} computes in bfloat16 or float16: set AUTOGLM_DTYPE accordingly")
    if s.max_memory:
        try:
            parse_max_memory(s.max_memory)
        except ValueError as exc:
            errors.append(f"max_memory: {exc}; fix AUTOGLM_MAX_MEMORY")
    if s.api_key_file and not s.api_key:
        try:
            s.api_key = Path(s.api_key_file).read_text().strip()
        except OSError as exc:
            errors.append(f"api_key_file {s.api_key_file!r} cannot be read ({exc.strerror}): fix AUTOGLM_API_KEY_FILE")
        else:
            if not s.api_key:
                errors.append(f"api_key_file {s.api_key_file!r} is empty: put the key in it or unset it")
    if s.max_pixels > s.max_image_pixels:
        errors.append(
            f"max_pixels ({s.max_pixels}) must not exceed max_image_pixels ({s.max_image_pixels}): images are resized "
            "down to max_pixels, and refused above max_image_pixels"
        )
    bad_hosts = [h for h in s.image_hosts if not h or "/" in h or "@" in h]
    if bad_hosts:
        errors.append(f"allowed_image_hosts must list host names separated by commas (got {s.allowed_image_hosts!r})")
    if errors:
        raise ConfigError("Invalid configuration: " + "; ".join(errors) + ".")
    if not s.api_key and not s.allow_no_auth and s.host not in LOOPBACK:
        raise ConfigError(
            f"Invalid configuration: no API key, and the server would listen on {s.host}: set AUTOGLM_API_KEY_FILE "
            "(or AUTOGLM_API_KEY) to require 'Authorization: Bearer <key>', listen on 127.0.0.1 (AUTOGLM_HOST), "
            "or accept an open server with AUTOGLM_ALLOW_NO_AUTH=true."
        )


def parse_max_memory(text: str) -> dict[int, int]:
    """AUTOGLM_MAX_MEMORY's JSON object of GPU index -> bytes, as accelerate's max_memory."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"{text!r} is not JSON") from None
    if not isinstance(data, dict) or not data:
        raise ValueError('it must be a JSON object of GPU index to bytes, e.g. {"0": 20000000000}')
    out = {}
    for key, value in data.items():
        if not str(key).isdigit() or isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{key!r}: {value!r} is not a GPU index with a positive number of bytes")
        out[int(key)] = value
    return out
