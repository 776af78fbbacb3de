"""The preflight_report and preflight_failures filters (test_gpu_facts.py runs preflight_report in a play)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.autoglm.fleet.plugins.filter.preflight import preflight_failures, preflight_report

FACTS = {
    "gpu": {"gpu_count": 1, "driver_version": "535.54.03", "nvml_error": None,
            "gpus": [{"index": 0, "name": "NVIDIA L4", "memory_total_bytes": 24152899584, "errors": {}}]},
    "memory_mib": 128 * 1024,
    "disk_path": "/srv/models",
    "disk_free_bytes": 1 << 40,
    "distribution": "Ubuntu",
    "distribution_version": "22.04",
    "architecture": "x86_64",
    "python_version": "3.10.12",
    "kernel_headers_present": True,
}


def test_report_of_a_good_host():
    report = preflight_report(FACTS, None, "gpu-1")
    assert report["failed"] is False
    assert report["message"] == ""
    assert report["failures"] == []
    assert len(report["passed"]) == 9


def test_report_of_a_bad_host_has_one_message():
    report = preflight_report(dict(FACTS, memory_mib=8192, architecture="aarch64"), {"gpu_min_count": 2}, "gpu-2")
    assert report["failed"] is True
    assert [f["gate"] for f in report["failures"]] == ["gpu_count", "memory", "architecture"]
    assert report["message"].startswith("Preflight failed 3 gate(s) on gpu-2:\n- gpu_count: found 1 NVIDIA GPU(s)")
    assert preflight_failures(dict(FACTS, memory_mib=8192, architecture="aarch64"), {"gpu_min_count": 2}) == \
        report["failures"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: preflight_report(FACTS, {"gpu_min_count": "x"}), r"^preflight_report: preflight_gpu_min_count"),
        (lambda: preflight_failures(dict(FACTS, ram=1)), r"^preflight_failures: unknown preflight fact\(s\): ram"),
        (lambda: preflight_failures("not a dict"), r"^preflight_failures: preflight facts must be a dict"),
    ],
)
def test_errors_are_filter_errors(call, match):
    with pytest.raises(AnsibleFilterError, match=match):
        call()
