"""The cuda_min_driver, cuda_driver_ok and cuda_driver_check filters (test_gpu_facts.py runs them in a play)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.filter.cuda import cuda_driver_check, cuda_driver_ok, cuda_min_driver


@pytest.mark.parametrize(
    ("cuda", "allow", "expected"),
    [("11.8", False, "520.61.05"), ("12.8.1", False, "570.26"), ("12", False, "525.60.13"), ("12.9", True, "525.60.13"),
     (11.8, False, "520.61.05")],
)
def test_cuda_min_driver(cuda, allow, expected):
    assert cuda_min_driver(cuda, allow_minor_compat=allow) == expected


@pytest.mark.parametrize(
    ("driver", "cuda", "allow", "expected"),
    [
        ("520.61.05", "11.8", False, True),
        ("520.61.04", "11.8", False, False),
        ("575.51.03", "12.9", False, True),
        ("570.26", "12.9", False, False),
        ("570.26", "12.9", True, True),
        ("450.80.02", "11.8", True, True),
        ("450.80.01", "11.8", True, False),
        ("580.65.06", "13.0", False, True),
        ("575.51.03", "13.0", False, False),
        ("575.51.03", "13.0", True, False),  # minor-version compatibility never crosses a CUDA major
    ],
)
def test_cuda_driver_ok(driver, cuda, allow, expected):
    assert cuda_driver_ok(driver, cuda, allow_minor_compat=allow) is expected


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: cuda_min_driver("12.3"), r"^cuda_min_driver: CUDA 12\.3 is not a known CUDA release"),
        (lambda: cuda_driver_ok("535.54.03", "14.0"), r"^cuda_driver_ok: CUDA 14\.0 is not a known CUDA release"),
        (lambda: cuda_driver_ok("latest", "11.8"), r"^cuda_driver_ok: driver version 'latest' is not a dotted number"),
        (lambda: cuda_min_driver("eleven"), r"^cuda_min_driver: CUDA version 'eleven' is not of the form"),
        (lambda: cuda_driver_check("535.54.03", "12.3"), r"^cuda_driver_check: CUDA 12\.3 is not a known CUDA release"),
        (lambda: cuda_driver_check("r535", "12.8"), r"^cuda_driver_check: driver version 'r535' is not"),
    ],
)
def test_errors_are_filter_errors(call, match):
    with pytest.raises(AnsibleFilterError, match=match):
        call()


@pytest.mark.parametrize(
    ("driver", "cuda", "allow"),
    [("535.54.03", "12.8", True), ("535.54.03", "12.8", False), ("570.26", "12.8", False), ("535.54.03", "13.0", True),
     ("470.82.01", "11.8", True)],
)
def test_cuda_driver_check_agrees_with_cuda_driver_ok(driver, cuda, allow):
    """The two filters are one gate: the dict's ok is exactly cuda_driver_ok's answer."""
    assert cuda_driver_check(driver, cuda, allow_minor_compat=allow)["ok"] is cuda_driver_ok(
        driver, cuda, allow_minor_compat=allow)


def test_cuda_driver_check_says_when_minor_compat_lets_it_through():
    result = cuda_driver_check("535.54.03", "12.8", allow_minor_compat=True)
    assert (result["ok"], result["native"], result["via_minor_compat"]) == (True, False, True)
    assert "only through NVIDIA's minor-version compatibility" in result["note"]
    assert "PTX JIT" in result["note"] and len(result["limits"]) == 2
