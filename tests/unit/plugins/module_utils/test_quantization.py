"""Quantization settings: impossible combinations refused with a message that says what to set instead."""

from __future__ import annotations

import itertools

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils._quantization import (
    DEVICES,
    DTYPES,
    ENGINES,
    QUANTIZATIONS,
    QuantizationError,
    check_quantization,
)

# (quantization, device, engine, dtype) that must pass
VALID = [
    ("none", "auto", "autoglm", "auto"),
    ("none", "cuda", "vllm", "bfloat16"),
    ("int8", "cpu", "autoglm", "float32"),
    ("int8", "auto", "autoglm", "auto"),  # the server's CPU path: auto without a GPU is the CPU
    ("bnb-8bit", "cuda", "autoglm", "bfloat16"),
    ("bnb-8bit", "cuda", "autoglm", "float16"),
    ("bnb-4bit", "cuda", "autoglm", "auto"),
]


@pytest.mark.parametrize(("quantization", "device", "engine", "dtype"), VALID)
def test_valid(quantization, device, engine, dtype):
    result = check_quantization(quantization, device=device, engine=engine, dtype=dtype)
    assert result == {"ok": True, "errors": [], "load_kwargs": result["load_kwargs"]}


@pytest.mark.parametrize(
    ("quantization", "device", "engine", "dtype", "message"),
    [
        ("int8", "cuda", "autoglm", "auto", "quantization int8 is torch's dynamic quantization for CPU: on CUDA use "
                                            "bnb-8bit"),
        ("bnb-8bit", "cpu", "autoglm", "auto", "quantization bnb-8bit needs CUDA (bitsandbytes on the GPU): on CPU "
                                               "use int8"),
        ("bnb-4bit", "cpu", "autoglm", "auto", "quantization bnb-4bit needs CUDA"),
        ("bnb-4bit", "auto", "autoglm", "auto", "needs device cuda, not auto"),
        ("bnb-8bit", "cuda", "vllm", "auto", "quantization bnb-8bit is for engine autoglm; with engine vllm set "
                                             "quantization none"),
        ("int8", "cpu", "vllm", "auto", "engine vllm runs on GPUs only here"),
        ("bnb-4bit", "cuda", "autoglm", "float32", "float32 is refused"),
    ],
)
def test_refused(quantization, device, engine, dtype, message):
    result = check_quantization(quantization, device=device, engine=engine, dtype=dtype)
    assert result["ok"] is False and result["load_kwargs"] == {}
    assert any(message in error for error in result["errors"]), result["errors"]


def test_all_refusals_at_once():
    errors = check_quantization("int8", device="cpu", engine="vllm")["errors"]
    assert len(errors) == 2  # vLLM on CPU, and a quantization with vLLM


def test_every_combination_is_decided():
    """No combination raises; every refusal carries a fix ("use" or "set")."""
    for q, d, e, t in itertools.product(QUANTIZATIONS, DEVICES, ENGINES, DTYPES):
        result = check_quantization(q, device=d, engine=e, dtype=t)
        assert result["ok"] is (not result["errors"])
        assert all(("use " in err) or ("set " in err) for err in result["errors"]), result["errors"]


def test_load_kwargs():
    assert check_quantization("bnb-8bit", device="cuda", dtype="bfloat16")["load_kwargs"] == {"load_in_8bit": True}
    four = check_quantization("bnb-4bit", device="cuda", dtype="float16", bnb_4bit_type="fp4")["load_kwargs"]
    assert four == {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_compute_dtype": "float16",
                    "bnb_4bit_use_double_quant": True}
    assert check_quantization("bnb-4bit", device="cuda")["load_kwargs"]["bnb_4bit_compute_dtype"] == "bfloat16"


@pytest.mark.parametrize(("kwargs", "match"), [({"quantization": "gptq"}, "quantization must be one of"),
                                               ({"device": "gpu"}, "device must be one of"),
                                               ({"engine": "tgi"}, "engine must be one of"),
                                               ({"dtype": "int4"}, "dtype must be one of"),
                                               ({"bnb_4bit_type": "int4"}, "bnb_4bit_type must be one of")])
def test_unknown_values_are_errors(kwargs, match):
    with pytest.raises(QuantizationError, match=match):
        check_quantization(**kwargs)
