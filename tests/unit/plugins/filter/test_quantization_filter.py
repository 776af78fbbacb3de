"""The model_quantization_check filter."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.filter.quantization import FilterModule, model_quantization_check


def test_registered():
    assert FilterModule().filters() == {"model_quantization_check": model_quantization_check}


def test_filter():
    assert model_quantization_check("bnb-4bit", device="cuda")["ok"] is True
    assert model_quantization_check("int8", device="cuda")["ok"] is False


def test_errors_are_filter_errors():
    with pytest.raises(AnsibleFilterError, match=r"^model_quantization_check: quantization must be one of"):
        model_quantization_check("awq")
