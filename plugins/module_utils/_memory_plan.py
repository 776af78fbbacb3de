# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Will a model fit the GPUs it is given? GPU memory planning from the model's config.json, as pure functions.

plan() adds up what the model server needs on the GPUs chosen by model_serve_gpus and compares it with their
memory, per GPU and in total:

- weights: the checkpoint's weight files (sizes from the signed manifest / model_fetch, or safetensors headers),
  converted to the serving dtype; without files, the parameter count derived from config.json
  (estimate_parameters: exact for the GLM-4 families, GLM-4.1V and GLM-4.5V, and Llama-style models);
- KV cache: layers x 2 x kv_heads x head_dim x dtype bytes per token (the text config of a vision-language
  model), times max_batch_size x max_model_len (the server pads a decode batch to its longest sequence);
- activations: one prefill of max_model_len tokens (the server prefills one request at a time, logits of the
  last token only): tokens x (3 x intermediate + 4 x hidden) x dtype bytes, plus a fixed overhead per GPU
  (CUDA context, cuBLAS workspaces, the allocator's slack);
- against each GPU's memory_total_bytes (the gpu fact of autoglm.fleet.gpu_facts) x gpu_memory_utilization.

A device map spreads whole modules (a decoder layer, the embeddings) over the GPUs, so each GPU must also hold
the largest such module plus the activations. The result says whether it fits, with the numbers, and what to
change when it does not. No I/O: the callers read config.json and the file sizes.
"""

from __future__ import annotations

import json
import struct

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1}
# safetensors' dtype names -> bytes per element
SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                     "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}
# quantization -> bytes per parameter of the quantized linear layers (bitsandbytes: int8 with a float32 scale per
# row; nf4/fp4 with a float32 absmax per block of 64, 4.5 bits in all). Embeddings and lm_head stay in the dtype.
QUANT_BYTES = {"none": None, "bnb-8bit": 1.0, "bnb-4bit": 4.5 / 8}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

DEFAULTS = {
    "dtype": "bfloat16",
    "kv_dtype": None,  # None: the dtype
    "quantization": "none",
    "max_batch_size": 16,
    "max_model_len": 0,  # 0: the model's max_position_embeddings
    "gpu_memory_utilization": 0.9,
    "overhead_bytes_per_gpu": GIB,
}


class MemoryPlanError(ValueError):
    """The config, GPUs or settings are unusable; the message says which and why."""


def _int(cfg, key, where, default=None):
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MemoryPlanError("%s.%s must be a non-negative integer, not %r" % (where, key, value))
    return value


def text_config(config):
    """The language model's part of config.json: text_config for a vision-language model, else the config."""
    if not isinstance(config, dict):
        raise MemoryPlanError("the model config must be a dict (config.json), not %s" % type(config).__name__)
    text = config.get("text_config")
    if text is None:
        text = config
    if not isinstance(text, dict) or "hidden_size" not in text:
        raise MemoryPlanError("config.json has no hidden_size (nor text_config.hidden_size): is it a transformer LM?")
    return text


def _text_dims(config):
    t = text_config(config)
    where = "text_config" if "text_config" in config else "config"
    hidden = _int(t, "hidden_size", where)
    heads = _int(t, "num_attention_heads", where)
    if not heads:
        raise MemoryPlanError("%s.num_attention_heads must be at least 1" % where)
    kv_heads = t.get("num_key_value_heads") or heads
    head_dim = t.get("head_dim") or hidden // heads
    return {
        "hidden": hidden,
        "heads": heads,
        "kv_heads": _int({"n": kv_heads}, "n", where + ".num_key_value_heads"),
        "head_dim": _int({"n": head_dim}, "n", where + ".head_dim"),
        "layers": _int(t, "num_hidden_layers", where),
        "intermediate": _int(t, "intermediate_size", where),
        "vocab": _int(t, "vocab_size", where),
        "max_position_embeddings": _int(t, "max_position_embeddings", where, 0),
        "model_type": str(t.get("model_type") or config.get("model_type") or ""),
        "attention_bias": bool(t.get("attention_bias", str(t.get("model_type", "")).startswith("glm4"))),
        "tie": bool(config.get("tie_word_embeddings", t.get("tie_word_embeddings", False))),
        "moe": {key: t[key] for key in ("n_routed_experts", "moe_intermediate_size", "n_shared_experts",
                                        "first_k_dense_replace") if key in t},
    }


def kv_bytes_per_token(config, dtype_bytes):
    """KV cache bytes per token: layers x 2 (K and V) x kv_heads x head_dim x bytes per element."""
    d = _text_dims(config)
    return d["layers"] * 2 * d["kv_heads"] * d["head_dim"] * dtype_bytes


def _vision_parameters(vision):
    """GLM-4.1V / GLM-4.5V vision tower (Glm4vVisionModel): patch embedding, blocks, downsample and merger."""
    where = "vision_config"
    hv = _int(vision, "hidden_size", where)
    out = _int(vision, "out_hidden_size", where)
    inter = _int(vision, "intermediate_size", where)
    depth = _int(vision, "depth", where)
    patch = _int(vision, "patch_size", where)
    merge = _int(vision, "spatial_merge_size", where, 2)
    n = _int(vision, "in_channels", where, 3) * _int(vision, "temporal_patch_size", where, 2) * patch * patch * hv + hv
    n += (_int(vision, "image_size", where, 336) // patch) ** 2 * hv  # learned position embedding
    qkv_bias = 4 * hv if vision.get("attention_bias") else 0
    n += depth * (hv * 3 * hv + hv * hv + qkv_bias + 3 * hv * out + 2 * hv)  # qkv, proj, gated MLP, two norms
    n += 2 * hv  # post_conv_layernorm, post_layernorm
    n += hv * out * merge * merge + out  # downsample convolution
    n += out * out + 2 * out + 3 * out * inter  # merger: proj, LayerNorm, gated MLP
    return n


def estimate_parameters(config):
    """Parameter counts from config.json: {embedding, lm_head, decoder, vision, total, largest_layer}.

    The decoder is a GQA transformer with a gated MLP (Llama, GLM-4, GLM-4.1V's text model) or GLM-4.5's MoE
    (routed and shared experts after first_k_dense_replace dense layers). GLM-4 text layers carry four norms,
    others two; the vision tower is GLM-4.1V's (vision_config with out_hidden_size).
    """
    d = _text_dims(config)
    h, hd = d["hidden"], d["head_dim"]
    q, kv = d["heads"] * hd, d["kv_heads"] * hd
    attention = h * q + 2 * h * kv + q * h + ((q + 2 * kv) if d["attention_bias"] else 0)
    norms = (4 if d["model_type"] in ("glm4", "glm4v", "glm4v_text") else 2) * h
    dense = 3 * h * d["intermediate"]
    moe = d["moe"]
    decoder = 0
    for layer in range(d["layers"]):
        if moe.get("n_routed_experts") and layer >= moe.get("first_k_dense_replace", 0):
            experts = moe["n_routed_experts"]
            mlp = (experts + moe.get("n_shared_experts", 0)) * 3 * h * moe["moe_intermediate_size"]
            mlp += experts * h + experts  # router weight and its score-correction bias
        else:
            mlp = dense
        decoder += attention + mlp + norms
    decoder += h  # final norm
    embedding = d["vocab"] * h
    lm_head = 0 if d["tie"] else embedding
    vision = config.get("vision_config")
    vision_params = _vision_parameters(vision) if isinstance(vision, dict) and "out_hidden_size" in vision else 0
    return {"embedding": embedding, "lm_head": lm_head, "decoder": decoder, "vision": vision_params,
            "total": embedding + lm_head + decoder + vision_params,
            "largest_layer": attention + max(dense, _moe_layer(d, h)) + norms}


def _moe_layer(d, h):
    moe = d["moe"]
    if not moe.get("n_routed_experts"):
        return 0
    experts = moe["n_routed_experts"]
    return (experts + moe.get("n_shared_experts", 0)) * 3 * h * moe["moe_intermediate_size"] + experts * h + experts


def checkpoint_dtype(config):
    """The dtype the checkpoint is stored in (config.json's torch_dtype / dtype), or None."""
    for where in (config, config.get("text_config") or {}):
        value = where.get("torch_dtype") or where.get("dtype")
        if value in DTYPE_BYTES:
            return value
    return None


def parse_safetensors_header(data):
    """Tensors of a safetensors file from its first bytes: {name: (dtype, shape)}; the header is
    an 8-byte little-endian length, then that many bytes of JSON."""
    if len(data) < 8:
        raise MemoryPlanError("not a safetensors file: fewer than 8 bytes")
    (length,) = struct.unpack("<Q", data[:8])
    if length > 100 * 1024 * 1024 or len(data) < 8 + length:
        raise MemoryPlanError("not a safetensors file, or its header (%d bytes) was cut short" % length)
    try:
        header = json.loads(data[8:8 + length].decode("utf-8"))
    except ValueError as exc:
        raise MemoryPlanError("the safetensors header is not JSON: %s" % exc) from exc
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in SAFETENSORS_BYTES or not isinstance(
                info.get("shape"), list):
            raise MemoryPlanError("safetensors tensor %s has no known dtype and shape" % name)
        tensors[name] = (info["dtype"], info["shape"])
    return tensors


def tensor_bytes(tensors, dtype_bytes=None):
    """Bytes of {name: (dtype, shape)}: as stored, or with every floating tensor in `dtype_bytes`."""
    total = 0
    for dtype, shape in tensors.values():
        count = 1
        for dim in shape:
            count *= dim
        floating = dtype.startswith(("F", "BF"))
        total += count * (dtype_bytes if dtype_bytes and floating else SAFETENSORS_BYTES[dtype])
    return total


def weight_files_bytes(files):
    """Sum of the weight files (.safetensors, .bin, .pt, .pth) in [{path, size}] (model_fetch's files)."""
    if not isinstance(files, list):
        raise MemoryPlanError("weight files must be a list of {path, size}")
    total = 0
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise MemoryPlanError("each weight file must be a dict with path and size, not %r" % (item,))
        if not item["path"].endswith(WEIGHT_SUFFIXES):
            continue
        size = item.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise MemoryPlanError("weight file %s has no size (a signed manifest lists none: take the sizes from "
                                  "model_fetch's files after the fetch)" % item["path"])
        total += size
    return total


def select_gpus(gpus, selection="all"):
    """The GPUs model_serve_gpus picks: "all", a count (the first N by index) or a list of indices / UUIDs."""
    if not isinstance(gpus, list) or not all(isinstance(g, dict) for g in gpus):
        raise MemoryPlanError("gpus must be a list of GPU dicts (the gpu fact's gpus)")
    for n, gpu in enumerate(gpus):
        size = gpu.get("memory_total_bytes")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise MemoryPlanError("gpus[%d] has no memory_total_bytes (NVML could not read it)" % n)
    ordered = sorted(gpus, key=lambda g: g.get("index", 0))
    if selection in (None, "all"):
        chosen = ordered
    elif isinstance(selection, list):
        wanted = [str(s) for s in selection]
        chosen = [g for g in ordered if str(g.get("index")) in wanted or str(g.get("uuid")) in wanted]
        found = [str(g.get("index")) for g in chosen] + [str(g.get("uuid")) for g in chosen]
        missing = [w for w in wanted if w not in found]
        if missing:
            raise MemoryPlanError("model_serve_gpus names GPUs this host does not have: %s (it has %s)"
                                  % (", ".join(missing), ", ".join(str(g.get("index")) for g in ordered)))
    elif str(selection).isdigit() and int(selection) > 0:
        if int(selection) > len(ordered):
            raise MemoryPlanError("model_serve_gpus asks for %s GPUs; this host has %d" % (selection, len(ordered)))
        chosen = ordered[:int(selection)]
    else:
        raise MemoryPlanError("model_serve_gpus must be 'all', a count or a list of GPU indices or UUIDs, not %r"
                              % (selection,))
    if not chosen:
        raise MemoryPlanError("no GPU to plan for: the host reports none")
    return chosen


def _settings(settings):
    unknown = sorted(set(settings or {}) - set(DEFAULTS))
    if unknown:
        raise MemoryPlanError("unknown memory plan setting(s): %s; known: %s"
                              % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    s = dict(DEFAULTS)
    s.update({k: v for k, v in (settings or {}).items() if v is not None})
    for key in ("dtype", "kv_dtype"):
        if s[key] is not None and s[key] not in DTYPE_BYTES:
            raise MemoryPlanError("%s must be one of %s, not %r" % (key, ", ".join(sorted(DTYPE_BYTES)), s[key]))
    if s["quantization"] not in QUANT_BYTES:
        raise MemoryPlanError("quantization must be one of %s, not %r" % (", ".join(QUANT_BYTES), s["quantization"]))
    for key in ("max_batch_size", "max_model_len", "overhead_bytes_per_gpu"):
        if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < 0:
            raise MemoryPlanError("%s must be a non-negative integer, not %r" % (key, s[key]))
    if s["max_batch_size"] < 1:
        raise MemoryPlanError("max_batch_size must be at least 1")
    util = s["gpu_memory_utilization"]
    if isinstance(util, bool) or not isinstance(util, (int, float)) or not 0 < util <= 1:
        raise MemoryPlanError("gpu_memory_utilization must be a fraction in (0, 1], not %r" % (util,))
    return s


def gib(num):
    return "%.1f GiB" % (num / float(GIB))


def plan(config, gpus, settings=None, weight_files=None, selection="all"):
    """The memory plan of one model on the GPUs `selection` picks; see the module docstring.

    Returns {fits, per_gpu_fits, total_fits, message, dtype, parameters, parameters_source, weight_bytes,
    kv_bytes_per_token, kv_cache_bytes, activation_bytes, overhead_bytes, need_bytes, usable_bytes,
    largest_module_bytes, max_batch_size, max_model_len, max_model_len_that_fits, gpus, max_memory}.
    `max_memory` maps each chosen GPU's index to the weight bytes a device map may put on it (accelerate's
    max_memory), leaving that GPU's share of KV cache and activations free.
    """
    s = _settings(settings)
    dims = _text_dims(config)
    chosen = select_gpus(gpus, selection)
    dtype_bytes = DTYPE_BYTES[s["dtype"]]
    kv_bytes = DTYPE_BYTES[s["kv_dtype"] or s["dtype"]]
    estimate = estimate_parameters(config)

    stored = checkpoint_dtype(config)
    files_total = weight_files_bytes(weight_files) if weight_files else 0
    if files_total:
        # the files hold the checkpoint's dtype; the server casts to the serving dtype
        scale = dtype_bytes / float(DTYPE_BYTES[stored]) if stored else 1.0
        weight_bytes = int(files_total * scale)
        parameters = int(files_total / float(DTYPE_BYTES[stored])) if stored else estimate["total"]
        source = "weight files (%s)" % (stored or "dtype unknown, taken as stored")
    else:
        weight_bytes = estimate["total"] * dtype_bytes
        parameters = estimate["total"]
        source = "config.json"
    quant = QUANT_BYTES[s["quantization"]]
    if quant is not None:
        # the linear layers shrink; embeddings and lm_head stay in the dtype
        kept = (estimate["embedding"] + estimate["lm_head"]) * dtype_bytes
        linear = max(0, weight_bytes - kept)
        weight_bytes = kept + int(linear / dtype_bytes * quant)

    max_len = s["max_model_len"] or dims["max_position_embeddings"]
    if not max_len:
        raise MemoryPlanError("max_model_len is 0 and config.json has no max_position_embeddings: set max_model_len")
    if dims["max_position_embeddings"] and max_len > dims["max_position_embeddings"]:
        max_len = dims["max_position_embeddings"]  # the server caps it the same way
    per_token = kv_bytes_per_token(config, kv_bytes)
    kv_cache = per_token * s["max_batch_size"] * max_len
    act_per_token = (3 * dims["intermediate"] + 4 * dims["hidden"]) * dtype_bytes
    activations = act_per_token * max_len
    overhead = s["overhead_bytes_per_gpu"] * len(chosen)
    need = weight_bytes + kv_cache + activations + overhead

    gpu_rows = []
    for gpu in chosen:
        usable = int(gpu["memory_total_bytes"] * s["gpu_memory_utilization"])
        gpu_rows.append({"index": gpu.get("index"), "name": gpu.get("name"), "memory_total_bytes":
                         gpu["memory_total_bytes"], "usable_bytes": usable})
    usable_total = sum(row["usable_bytes"] for row in gpu_rows)
    largest_module = max(estimate["embedding"], estimate["largest_layer"]) * dtype_bytes
    if quant is not None:
        largest_module = max(estimate["embedding"] * dtype_bytes, int(estimate["largest_layer"] * quant))
    smallest = min(row["usable_bytes"] for row in gpu_rows)
    per_gpu_fits = smallest - s["overhead_bytes_per_gpu"] >= largest_module + activations
    total_fits = need <= usable_total
    room = usable_total - weight_bytes - overhead
    fits_len = int(room // (per_token * s["max_batch_size"] + act_per_token)) if room > 0 else 0
    fits_len = min(fits_len, dims["max_position_embeddings"] or fits_len)

    spare = kv_cache + activations
    max_memory = {}
    for row in gpu_rows:
        share = spare * row["usable_bytes"] / float(usable_total)
        max_memory[str(row["index"])] = max(0, int(row["usable_bytes"] - s["overhead_bytes_per_gpu"] - share))

    breakdown = ("weights %s (%.2fB parameters from %s, %s%s) + KV cache %s (%d x %d tokens at %d KiB/token) + "
                 "activations %s + %s overhead on each of %d GPU(s)"
                 % (gib(weight_bytes), parameters / 1e9, source, s["dtype"],
                    "" if quant is None else ", " + s["quantization"], gib(kv_cache), s["max_batch_size"], max_len,
                    per_token // 1024, gib(activations), gib(s["overhead_bytes_per_gpu"]), len(chosen)))
    gpu_text = ", ".join("GPU %s %s x %.2f = %s" % (row["index"], gib(row["memory_total_bytes"]),
                                                    s["gpu_memory_utilization"], gib(row["usable_bytes"]))
                         for row in gpu_rows)
    if total_fits and per_gpu_fits:
        message = "fits: needs %s of %s usable (%s): %s" % (gib(need), gib(usable_total), gpu_text, breakdown)
    else:
        reasons = []
        if not total_fits:
            reasons.append("needs %s but the GPUs have %s usable (%s)" % (gib(need), gib(usable_total), gpu_text))
        if not per_gpu_fits:
            reasons.append("the largest module (%s) plus activations (%s) does not fit the smallest GPU's %s"
                           % (gib(largest_module), gib(activations), gib(smallest - s["overhead_bytes_per_gpu"])))
        fixes = []
        if fits_len and fits_len < max_len:
            fixes.append("lower max_model_len to %d or less (at max_batch_size %d)" % (fits_len, s["max_batch_size"]))
        if s["max_batch_size"] > 1:
            fixes.append("lower max_batch_size")
        fixes.append("give it more or larger GPUs (model_serve_gpus)")
        if quant is None:
            fixes.append("or quantize it (bitsandbytes 8-bit or 4-bit)")
        message = "does not fit: %s. %s. Fix: %s" % (
            "; ".join(reasons), breakdown[0].upper() + breakdown[1:], ", ".join(fixes))
    return {
        "fits": total_fits and per_gpu_fits,
        "per_gpu_fits": per_gpu_fits,
        "total_fits": total_fits,
        "message": message,
        "dtype": s["dtype"],
        "quantization": s["quantization"],
        "parameters": parameters,
        "parameters_source": source,
        "weight_bytes": weight_bytes,
        "kv_bytes_per_token": per_token,
        "kv_cache_bytes": kv_cache,
        "activation_bytes": activations,
        "overhead_bytes": overhead,
        "need_bytes": need,
        "usable_bytes": usable_total,
        "largest_module_bytes": largest_module,
        "max_batch_size": s["max_batch_size"],
        "max_model_len": max_len,
        "max_model_len_that_fits": fits_len,
        "gpus": gpu_rows,
        "max_memory": max_memory,
    }
