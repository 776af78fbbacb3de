# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which quantization goes with which engine, device and dtype: refuse impossible combinations, with a message.

One pure function, standard library only, so the model server can use the same rules (its config.validate) as the
model_serve role's preflight (through the autoglm.fleet.model_quantization_check filter):

- none: always;
- int8: torch's dynamic int8 quantization of the linear layers, CPU only (the server's existing CPU path);
- bnb-8bit / bnb-4bit: bitsandbytes (its PyPI wheel, in the CUDA image) on CUDA, with our engine only; 4-bit is
  NF4 (or FP4) computing in bfloat16 or float16.

Refused, each with what to set instead: int8 on CUDA, bitsandbytes on CPU or on device "auto" (it must be CUDA
for sure), any quantization with vLLM here (its own quantized checkpoints are a separate matter), vLLM on CPU,
bitsandbytes 4-bit computing in float32 (no memory saved where it matters, and slow) or 8-bit in float32.
"""

from __future__ import annotations

ENGINES = ("autoglm", "vllm")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "int8", "bnb-8bit", "bnb-4bit")
BNB_4BIT_TYPES = ("nf4", "fp4")


class QuantizationError(ValueError):
    """An unknown value was given (a typo, not a combination); the message lists the known ones."""


def _choice(name, value, choices):
    if value not in choices:
        raise QuantizationError("%s must be one of %s, not %r" % (name, ", ".join(choices), value))


def check_quantization(quantization="none", device="auto", engine="autoglm", dtype="auto", bnb_4bit_type="nf4"):
    """{ok, errors, load_kwargs}: errors name each impossible combination and the fix; load_kwargs are the
    transformers BitsAndBytesConfig arguments for a bitsandbytes setting ({} otherwise)."""
    _choice("quantization", quantization, QUANTIZATIONS)
    _choice("device", device, DEVICES)
    _choice("engine", engine, ENGINES)
    _choice("dtype", dtype, DTYPES)
    _choice("bnb_4bit_type", bnb_4bit_type, BNB_4BIT_TYPES)
    errors = []
    bnb = quantization.startswith("bnb-")
    if engine == "vllm":
        if device == "cpu":
            errors.append("engine vllm runs on GPUs only here: use engine autoglm for CPU serving, or device cuda")
        if quantization != "none":
            errors.append("quantization %s is for engine autoglm; with engine vllm set quantization none (serve a "
                          "pre-quantized checkpoint instead if memory is short)" % quantization)
    if quantization == "int8" and device == "cuda":
        errors.append("quantization int8 is torch's dynamic quantization for CPU: on CUDA use bnb-8bit (or "
                      "bnb-4bit), or serve on device cpu")
    if bnb and device == "cpu":
        errors.append("quantization %s needs CUDA (bitsandbytes on the GPU): on CPU use int8, or set device cuda"
                      % quantization)
    if bnb and device == "auto":
        errors.append("quantization %s needs device cuda, not auto (auto falls back to the CPU when no GPU is seen, "
                      "where bitsandbytes is refused): set device cuda" % quantization)
    if bnb and dtype == "float32":
        errors.append("quantization %s computes in the serving dtype: float32 is refused (slow, and it keeps the "
                      "unquantized layers at 4 bytes); use bfloat16 or float16" % quantization)
    load_kwargs = {}
    if bnb and not errors:
        compute = "float16" if dtype == "float16" else "bfloat16"
        if quantization == "bnb-8bit":
            load_kwargs = {"load_in_8bit": True}
        else:
            load_kwargs = {"load_in_4bit": True, "bnb_4bit_quant_type": bnb_4bit_type,
                           "bnb_4bit_compute_dtype": compute, "bnb_4bit_use_double_quant": True}
    return {"ok": not errors, "errors": errors, "load_kwargs": load_kwargs}
