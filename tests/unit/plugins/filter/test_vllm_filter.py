"""The vllm_command filter: the mapping as is, its errors as filter errors."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.filter.vllm import FilterModule, vllm_command


def test_registered():
    assert FilterModule().filters() == {"vllm_command": vllm_command}


def test_filter():
    out = vllm_command({"api_key": True, "max_model_len": 25480})
    assert out["argv"][out["argv"].index("--max-model-len") + 1] == "25480"


def test_errors_are_filter_errors():
    with pytest.raises(AnsibleFilterError, match=r"^vllm_command: vLLM settings: no API key"):
        vllm_command({})
