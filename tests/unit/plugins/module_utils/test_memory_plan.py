"""The GPU memory planner, with the real configs of GLM-4.1V-9B (Open-AutoGLM's AutoGLM-Phone-9B architecture) and
GLM-4.5V.

model_configs/glm-4.1v-9b-thinking.json: zai-org/GLM-4.1V-9B-Thinking's config.json (AutoGLM-Phone-9B is a
Glm4vForConditionalGeneration of the same shape); transformers documents its Glm4vConfig defaults as that
checkpoint's, and test_estimates_match_transformers checks the file against a model transformers builds from it.
model_configs/glm-4.5v.json: zai-org/GLM-4.5V's config (transformers 5.7 layout). Its checkpoint holds
107,710,933,120 numbers in 200.63 GiB of bf16 safetensors (a listing of its tensors); the estimate must hit that.
Every other number is derived from the configs, not restated.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils._memory_plan import (
    GIB,
    MemoryPlanError,
    estimate_parameters,
    kv_bytes_per_token,
    parse_safetensors_header,
    plan,
    select_gpus,
    tensor_bytes,
    text_config,
    weight_files_bytes,
)

HERE = Path(__file__).resolve().parent
GLM41V = json.loads((HERE / "model_configs" / "glm-4.1v-9b-thinking.json").read_text())
GLM45V = json.loads((HERE / "model_configs" / "glm-4.5v.json").read_text())
GLM45V_CHECKPOINT_NUMBERS = 107_710_933_120
MIB = 1024**2


def gpu(index, mib, name="GPU"):
    return {"index": index, "uuid": "GPU-%d" % index, "name": name, "memory_total_bytes": mib * MIB}


L4 = 23034  # MiB NVML reports for a "24 GB" L4
H200 = 143771  # MiB nvidia-smi showed on the lent H200 (.library/device/KINDS.md)
A100_80 = 81920


def test_estimates_match_transformers():
    """The formulas against the modules transformers builds from the same configs (meta device: no memory)."""
    script = (
        "import json, sys, torch\n"
        "from transformers import AutoConfig, AutoModelForImageTextToText\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    cfg = AutoConfig.for_model(**json.load(open(path)))\n"
        "    with torch.device('meta'):\n"
        "        model = AutoModelForImageTextToText.from_config(cfg)\n"
        "    out[path] = {'parameters': sum(p.numel() for p in model.parameters()),\n"
        "                 'buffers': sum(b.numel() for n, b in model.named_buffers() if 'e_score_correction' in n),\n"
        "                 'kv_heads': cfg.text_config.num_key_value_heads,\n"
        "                 'layers': cfg.text_config.num_hidden_layers}\n"
        "print(json.dumps(out))\n"
    )
    paths = [str(HERE / "model_configs" / name) for name in ("glm-4.1v-9b-thinking.json", "glm-4.5v.json")]
    done = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    counted = json.loads(done.stdout.strip().splitlines()[-1])
    glm41, glm45 = counted[paths[0]], counted[paths[1]]
    assert estimate_parameters(GLM41V)["total"] == glm41["parameters"]
    # GLM-4.5V's routers carry a score-correction bias that transformers keeps as a buffer; the checkpoint has it
    assert estimate_parameters(GLM45V)["total"] == glm45["parameters"] + glm45["buffers"] == GLM45V_CHECKPOINT_NUMBERS
    assert (glm41["kv_heads"], glm41["layers"]) == (2, 40)


def test_glm41v_shape():
    """The numbers the issue gives for AutoGLM-Phone-9B, read through the planner's own config access."""
    t = text_config(GLM41V)
    assert (t["hidden_size"], t["num_hidden_layers"], t["num_attention_heads"], t["num_key_value_heads"],
            t["vocab_size"]) == (4096, 40, 32, 2, 151552)
    assert GLM41V["vision_config"]["depth"] == 24
    params = estimate_parameters(GLM41V)
    assert 0.8e9 < params["vision"] < 1.0e9  # the vision tower is under a tenth of the model
    assert params["embedding"] == params["lm_head"] == 151552 * 4096  # untied


def test_glm41v_bf16_weights_and_kv():
    p = plan(GLM41V, [gpu(0, H200)])
    assert 18e9 < p["weight_bytes"] < 22e9  # "9B" is 10.3B parameters with the vision tower, 2 bytes each
    t = text_config(GLM41V)
    head_dim = t["hidden_size"] // t["num_attention_heads"]
    assert p["kv_bytes_per_token"] == t["num_hidden_layers"] * 2 * t["num_key_value_heads"] * head_dim * 2
    assert p["kv_bytes_per_token"] == 40 * 1024  # GQA with 2 KV heads: 40 KiB per token in bf16
    # default max_model_len is the model's context: 16 sequences of 65536 tokens
    assert p["max_model_len"] == t["max_position_embeddings"] == 65536
    assert p["kv_cache_bytes"] == p["kv_bytes_per_token"] * 16 * 65536


def test_two_copies_of_glm41v_do_not_fit_one_24_gib_gpu():
    weights = plan(GLM41V, [gpu(0, H200)])["weight_bytes"]
    assert weights < 24 * GIB < 2 * weights
    # one copy with Open-AutoGLM's context (25480 tokens) and the server's batch of 16 does not fit a 24 GiB card
    p = plan(GLM41V, [gpu(0, 24 * 1024, "NVIDIA L4")], {"max_model_len": 25480})
    assert not p["fits"] and not p["total_fits"]
    assert p["message"].startswith("does not fit: needs ")
    assert "but the GPUs have 21.6 GiB usable (GPU 0 24.0 GiB x 0.90 = 21.6 GiB)" in p["message"]
    assert "Weights 19.2 GiB (10.29B parameters from config.json, bfloat16)" in p["message"]
    assert "KV cache 15.6 GiB (16 x 25480 tokens at 40 KiB/token)" in p["message"]
    # the fix it offers is real: at that length the plan fits
    fixed = p["max_model_len_that_fits"]
    assert 0 < fixed < 25480
    assert "lower max_model_len to %d or less (at max_batch_size 16)" % fixed in p["message"]
    assert plan(GLM41V, [gpu(0, 24 * 1024)], {"max_model_len": fixed})["total_fits"]
    assert not plan(GLM41V, [gpu(0, 24 * 1024)], {"max_model_len": fixed + 64})["total_fits"]


def test_glm41v_on_one_h200_and_on_two_l4():
    assert plan(GLM41V, [gpu(0, H200)], {"max_model_len": 25480})["fits"]
    two = plan(GLM41V, [gpu(0, L4), gpu(1, L4)], {"max_model_len": 25480, "max_batch_size": 8})
    assert two["fits"], two["message"]
    # the device map keeps each GPU's share of KV cache and activations free
    spare = two["kv_cache_bytes"] + two["activation_bytes"]
    assert sum(two["max_memory"].values()) == pytest.approx(
        two["usable_bytes"] - 2 * GIB - spare, abs=4)
    assert sum(two["max_memory"].values()) >= two["weight_bytes"]
    # and with only one of them (model_serve_gpus: 1) it does not
    assert not plan(GLM41V, [gpu(0, L4), gpu(1, L4)], {"max_model_len": 25480, "max_batch_size": 8},
                    selection=1)["fits"]


def test_glm41v_quantized_fits_one_24_gib_gpu():
    bf16 = plan(GLM41V, [gpu(0, L4)], {"max_model_len": 8192, "max_batch_size": 4})
    nf4 = plan(GLM41V, [gpu(0, L4)], {"max_model_len": 8192, "max_batch_size": 4, "quantization": "bnb-4bit"})
    int8 = plan(GLM41V, [gpu(0, L4)], {"max_model_len": 8192, "max_batch_size": 4, "quantization": "bnb-8bit"})
    assert not bf16["fits"] and nf4["fits"] and int8["fits"]
    embeddings = 2 * 151552 * 4096 * 2  # embedding and lm_head stay in bf16
    assert nf4["weight_bytes"] < int8["weight_bytes"] < bf16["weight_bytes"]
    assert int8["weight_bytes"] - embeddings == pytest.approx((bf16["weight_bytes"] - embeddings) / 2, rel=1e-6)


def test_glm45v_needs_several_large_gpus():
    p1 = plan(GLM45V, [gpu(0, H200)], {"max_model_len": 16384})
    assert p1["weight_bytes"] == GLM45V_CHECKPOINT_NUMBERS * 2
    assert round(p1["weight_bytes"] / GIB, 2) == 200.63  # the listing's "200.63 GB" of bf16 tensors, in GiB
    assert not p1["fits"] and p1["max_model_len_that_fits"] == 0  # the weights alone exceed one H200
    four = [gpu(i, H200) for i in range(4)]
    p4 = plan(GLM45V, four, {"max_model_len": 16384})
    assert p4["fits"], p4["message"]
    # KV per token: 46 layers x 2 x 8 KV heads x 128 x 2 bytes
    assert p4["kv_bytes_per_token"] == 46 * 2 * 8 * 128 * 2
    # the largest module a device map places whole is a MoE layer (129 experts); it fits one GPU
    assert 4e9 < p4["largest_module_bytes"] < 5e9
    two_a100 = plan(GLM45V, [gpu(0, A100_80), gpu(1, A100_80)], {"max_model_len": 16384})
    assert not two_a100["fits"] and "Fix:" in two_a100["message"]


def test_weights_from_the_files_and_the_checkpoint_dtype():
    files = [{"path": "model-00001-of-00002.safetensors", "size": 10 * GIB},
             {"path": "model-00002-of-00002.safetensors", "size": 9 * GIB},
             {"path": "tokenizer.json", "size": 11 * MIB}, {"path": "config.json", "size": 2000}]
    assert weight_files_bytes(files) == 19 * GIB
    p = plan(GLM41V, [gpu(0, H200)], weight_files=files)
    assert p["weight_bytes"] == 19 * GIB and p["parameters_source"] == "weight files (bfloat16)"
    fp32 = dict(GLM41V, text_config=dict(GLM41V["text_config"], dtype="float32"))
    assert plan(fp32, [gpu(0, H200)], weight_files=files)["weight_bytes"] == 19 * GIB // 2  # cast to bf16
    assert plan(GLM41V, [gpu(0, H200)], {"dtype": "float32"}, weight_files=files)["weight_bytes"] == 38 * GIB
    with pytest.raises(MemoryPlanError, match=r"weight file a\.safetensors has no size \(a signed manifest"):
        weight_files_bytes([{"path": "a.safetensors", "size": None}])


def test_safetensors_header(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": np.zeros((4, 8), dtype=np.float16), "b": np.zeros((8,), dtype=np.float32),
               "i": np.zeros((3,), dtype=np.int64)}, str(path), metadata={"format": "pt"})
    data = path.read_bytes()
    tensors = parse_safetensors_header(data[: 8 + struct.unpack("<Q", data[:8])[0]])
    assert tensors == {"w": ("F16", [4, 8]), "b": ("F32", [8]), "i": ("I64", [3])}
    stored = tensor_bytes(tensors)
    assert stored == 4 * 8 * 2 + 8 * 4 + 3 * 8 == len(data) - 8 - struct.unpack("<Q", data[:8])[0]
    assert tensor_bytes(tensors, dtype_bytes=2) == 4 * 8 * 2 + 8 * 2 + 3 * 8  # floats in bf16, ints as they are
    with pytest.raises(MemoryPlanError, match="cut short"):
        parse_safetensors_header(data[:20])


def test_llama_style_config():
    llama = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 20,
             "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 8000,
             "max_position_embeddings": 2048, "tie_word_embeddings": False}
    params = estimate_parameters(llama)
    layer = 4 * 2048 * 2048 + 3 * 2048 * 5632 + 2 * 2048
    assert params["total"] == 20 * layer + 2048 + 2 * 8000 * 2048  # about 1.0B: devtools' "1b" size
    assert kv_bytes_per_token(llama, 2) == 20 * 2 * 16 * 128 * 2


@pytest.mark.parametrize(
    ("selection", "expected"),
    [("all", [0, 1, 2, 3]), (2, [0, 1]), ("3", [0, 1, 2]), ([2, "GPU-0"], [0, 2]), (["3"], [3])],
)
def test_select_gpus(selection, expected):
    gpus = [gpu(i, L4) for i in (3, 1, 0, 2)]
    assert [g["index"] for g in select_gpus(gpus, selection)] == expected


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: select_gpus([gpu(0, L4)], 2), "asks for 2 GPUs; this host has 1"),
        (lambda: select_gpus([gpu(0, L4)], [5]), "names GPUs this host does not have: 5"),
        (lambda: select_gpus([gpu(0, L4)], "some"), "must be 'all', a count or a list"),
        (lambda: select_gpus([], "all"), "no GPU to plan for"),
        (lambda: select_gpus([{"index": 0, "memory_total_bytes": None}]), "has no memory_total_bytes"),
        (lambda: plan(GLM41V, [gpu(0, L4)], {"max_batch": 4}), r"unknown memory plan setting\(s\): max_batch"),
        (lambda: plan(GLM41V, [gpu(0, L4)], {"dtype": "int4"}), "dtype must be one of"),
        (lambda: plan(GLM41V, [gpu(0, L4)], {"quantization": "gptq"}), "quantization must be one of"),
        (lambda: plan(GLM41V, [gpu(0, L4)], {"gpu_memory_utilization": 1.5}), r"fraction in \(0, 1\]"),
        (lambda: plan({"model_type": "bert"}, [gpu(0, L4)]), "no hidden_size"),
        (lambda: plan("config.json", [gpu(0, L4)]), "must be a dict"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(MemoryPlanError, match=match):
        call()
