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
    quantization: str = "none"  # none | int8 (CPU only)
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
    log_level: str = "info"

    @property
    def model_name(self) -> str:
        return self.served_model_name or Path(self.model_dir.rstrip("/")).name or "model"


CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "dtype": ("auto", "float32", "bfloat16", "float16"),
    "quantization": ("none", "int8"),
    "log_level": ("critical", "error", "warning", "info", "debug", "trace"),
}
POSITIVE = ("port", "max_batch_size", "max_waiting", "default_max_tokens", "max_stop_sequences", "retry_after")
NON_NEGATIVE = ("max_model_len", "threads", "drain_timeout")
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
    for name in NON_NEGATIVE:
        if getattr(s, name) < 0:
            errors.append(f"{name} must not be negative (got {getattr(s, name)})")
    if s.quantization == "int8" and s.device == "cuda":
        errors.append("quantization=int8 is for CPU only: set AUTOGLM_QUANTIZATION=none or AUTOGLM_DEVICE=cpu")
    if s.api_key_file and not s.api_key:
        try:
            s.api_key = Path(s.api_key_file).read_text().strip()
        except OSError as exc:
            errors.append(f"api_key_file {s.api_key_file!r} cannot be read ({exc.strerror}): fix AUTOGLM_API_KEY_FILE")
        else:
            if not s.api_key:
                errors.append(f"api_key_file {s.api_key_file!r} is empty: put the key in it or unset it")
    if errors:
        raise ConfigError("Invalid configuration: " + "; ".join(errors) + ".")
