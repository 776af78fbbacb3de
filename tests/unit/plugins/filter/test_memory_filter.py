"""The model_memory_plan filter: the planner's result as is, its errors as filter errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.filter.memory import FilterModule, model_memory_plan

CONFIG = json.loads((Path(__file__).resolve().parents[1] / "module_utils" / "model_configs"
                     / "glm-4.1v-9b-thinking.json").read_text())
GPUS = [{"index": 0, "uuid": "GPU-a", "name": "NVIDIA L4", "memory_total_bytes": 23034 * 1024**2},
        {"index": 1, "uuid": "GPU-b", "name": "NVIDIA L4", "memory_total_bytes": 23034 * 1024**2}]


def test_registered():
    assert FilterModule().filters() == {"model_memory_plan": model_memory_plan}


def test_plan_through_the_filter():
    both = model_memory_plan(CONFIG, GPUS, {"max_model_len": 25480, "max_batch_size": 8})
    one = model_memory_plan(CONFIG, GPUS, {"max_model_len": 25480, "max_batch_size": 8}, selection=["GPU-b"])
    assert both["fits"] and [g["index"] for g in both["gpus"]] == [0, 1]
    assert not one["fits"] and one["message"].startswith("does not fit: needs ")
    assert set(both["max_memory"]) == {"0", "1"}


def test_errors_are_filter_errors():
    with pytest.raises(AnsibleFilterError, match=r"^model_memory_plan: model_serve_gpus asks for 3 GPUs"):
        model_memory_plan(CONFIG, GPUS, selection=3)
