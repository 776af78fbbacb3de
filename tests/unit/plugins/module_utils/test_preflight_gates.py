"""_preflight.evaluate: every gate, its boundary, and the message that names the variable to change."""

from __future__ import annotations

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils._preflight import (
    DEFAULT_THRESHOLDS,
    GIB,
    PreflightError,
    evaluate,
    format_report,
)

ALL_GATES = ["gpu_count", "gpu_memory", "memory", "disk", "os", "architecture", "kernel_headers", "driver_cuda",
             "python"]


def gpu_fact(*memory_gib, driver="535.54.03", status="ok", error=None):
    gpus = [
        {"index": i, "name": "NVIDIA Test", "memory_total_bytes": round(gib * GIB), "errors": {}}
        for i, gib in enumerate(memory_gib)
    ]
    return {"gpu_count": len(gpus), "driver_version": driver, "nvml_status": status, "nvml_error": error,
            "gpus": gpus}


def good_facts(**overrides):
    facts = {
        "gpu": gpu_fact(80, 80),
        "memory_mib": 256 * 1024,
        "disk_path": "/opt/autoglm/models",
        "disk_free_bytes": 500 * GIB,
        "os_family": "Debian",
        "distribution": "Debian",
        "distribution_version": "12.5",
        "distribution_major_version": "12",
        "architecture": "x86_64",
        "python_version": "3.11.2",
        "kernel": "6.1.0-18-amd64",
        "kernel_headers_present": True,
    }
    facts.update(overrides)
    return facts


def failed(result):
    return {f["gate"]: f for f in result["failures"]}


def test_healthy_host_passes_every_gate():
    result = evaluate(good_facts())
    assert result == {"failures": [], "warnings": [], "passed": ALL_GATES, "waived": []}
    assert format_report(result, "gpu-1") == ""


def test_all_failures_are_reported_together():
    facts = good_facts(
        gpu=gpu_fact(16, driver="515.65.01"),
        memory_mib=16 * 1024,
        disk_free_bytes=10 * GIB,
        distribution="Fedora",
        distribution_version="40",
        distribution_major_version="40",
        architecture="ppc64le",
        kernel_headers_present=False,
        python_version="3.9.18",
    )
    result = evaluate(facts, {"gpu_min_count": 2, "allow_cuda_minor_compat": False})
    assert [f["gate"] for f in result["failures"]] == ALL_GATES
    assert result["passed"] == []
    message = format_report(result, "gpu-7")
    assert message.startswith("Preflight failed 9 gate(s) on gpu-7:\n")
    for failure in result["failures"]:
        assert failure["variable"].startswith("preflight_")
        assert failure["variable"] in failure["message"]
        assert "- %s: %s" % (failure["gate"], failure["message"]) in message


@pytest.mark.parametrize(("count", "minimum", "ok"), [(2, 2, True), (1, 2, False), (8, 8, True), (0, 0, True)])
def test_gpu_count_boundary(count, minimum, ok):
    result = evaluate(good_facts(gpu=gpu_fact(*([80] * count))), {"gpu_min_count": minimum})
    assert ("gpu_count" in failed(result)) is not ok


def test_gpu_count_message():
    message = failed(evaluate(good_facts(gpu=gpu_fact(80)), {"gpu_min_count": 4}))["gpu_count"]["message"]
    assert message == (
        "found 1 NVIDIA GPU(s) (NVML), need at least 4 (preflight_gpu_min_count): fix the host's GPUs or driver, "
        "lower preflight_gpu_min_count, or set preflight_require_gpu: false on a host without GPUs"
    )


def test_no_driver_yet_counts_gpus_on_the_pci_bus_and_defers_memory():
    nvml = {"gpu_count": 0, "nvml_status": "no_driver", "nvml_error": "libnvidia-ml.so not found", "gpus": []}
    result = evaluate(good_facts(gpu=nvml, pci_gpu_count=4), {"gpu_min_count": 4})
    assert "gpu_count" in result["passed"]
    assert "gpu_memory" not in result["passed"] and "gpu_memory" not in failed(result)
    assert result["warnings"] == [
        "gpu_memory not checked: NVML cannot read the memory of the 4 GPU(s) on the PCI bus "
        "(libnvidia-ml.so not found); it is checked when preflight runs again after the driver install"
    ]
    result = evaluate(good_facts(gpu=nvml, pci_gpu_count=1), {"gpu_min_count": 4})
    assert failed(result)["gpu_count"]["message"].startswith(
        "found 1 NVIDIA GPU(s) (on the PCI bus; NVML: libnvidia-ml.so not found), need at least 4"
    )


def test_gpu_facts_missing_counts_as_no_gpu():
    result = evaluate(good_facts(gpu=None))
    assert failed(result)["gpu_count"]["message"].startswith(
        "found 0 NVIDIA GPU(s) (NVML: GPU facts were not gathered), need at least 1"
    )


@pytest.mark.parametrize(
    ("gib", "minimum", "tolerance", "ok"),
    [
        (24.0, 24, 0, True),
        (23.99, 24, 0, False),
        (21.6, 24, 10, True),  # 24 GiB less 10 %
        (21.59, 24, 10, False),
        (22.49, 24, 10, True),  # an A10 or L4 with the defaults
        (79.2, 80, 1, True),
        (79.1, 80, 1, False),
    ],
)
def test_gpu_memory_boundary(gib, minimum, tolerance, ok):
    result = evaluate(good_facts(gpu=gpu_fact(80, gib)),
                      {"gpu_min_memory_gib": minimum, "gpu_memory_tolerance_pct": tolerance})
    assert ("gpu_memory" in failed(result)) is not ok


def test_gpu_memory_message_lists_every_short_gpu():
    gpu = gpu_fact(16, 80, 12)
    gpu["gpus"].append({"index": 3, "name": "NVIDIA Test", "memory_total_bytes": None,
                        "errors": {"memory": "GPU is lost (NVMLError_GpuIsLost)"}})
    failure = failed(evaluate(good_facts(gpu=gpu)))["gpu_memory"]
    assert failure["variable"] == "preflight_gpu_min_memory_gib"
    assert failure["message"] == (
        "GPU memory below 24 GiB (preflight_gpu_min_memory_gib, accepting down to 21.6 GiB with "
        "preflight_gpu_memory_tolerance_pct=10): GPU 0 (NVIDIA Test): 16.0 GiB; GPU 2 (NVIDIA Test): 12.0 GiB; "
        "GPU 3 (NVIDIA Test): memory unknown (GPU is lost (NVMLError_GpuIsLost)); use GPUs with more memory or "
        "lower preflight_gpu_min_memory_gib"
    )


def test_require_gpu_false_waives_gpu_gates_visibly():
    result = evaluate(good_facts(gpu=gpu_fact()), {"require_gpu": False})
    assert result["failures"] == []
    assert result["waived"] == ["gpu_count", "gpu_memory"]
    assert "gpu_count" not in result["passed"]
    (warning,) = result["warnings"]
    assert warning.startswith(
        "GPU gates (gpu_count, gpu_memory) waived because preflight_require_gpu is false: gpu_count would fail: "
        "found 0 NVIDIA GPU(s)"
    )


def test_require_gpu_false_still_warns_when_gates_would_pass():
    result = evaluate(good_facts(), {"require_gpu": False})
    assert result["warnings"] == [
        "GPU gates (gpu_count, gpu_memory) waived because preflight_require_gpu is false (they would pass)"
    ]
    assert result["failures"] == []


def test_require_gpu_false_does_not_waive_other_gates():
    result = evaluate(good_facts(gpu=None, memory_mib=1024), {"require_gpu": False})
    assert list(failed(result)) == ["memory"]


@pytest.mark.parametrize(
    ("mib", "minimum", "tolerance", "ok"),
    [
        (65536, 64, 0, True),
        (65535, 64, 0, False),
        (62259.2, 64, 5, True),  # 64 GiB less 5 %
        (62259, 64, 5, False),
        (64000, 64, 5, True),  # what a 64 GiB server reports as MemTotal
    ],
)
def test_memory_boundary(mib, minimum, tolerance, ok):
    result = evaluate(good_facts(memory_mib=mib), {"min_memory_gib": minimum, "memory_tolerance_pct": tolerance})
    assert ("memory" in failed(result)) is not ok


def test_memory_messages():
    failure = failed(evaluate(good_facts(memory_mib=32 * 1024)))["memory"]
    assert failure == {
        "gate": "memory",
        "variable": "preflight_min_memory_gib",
        "message": "system memory 32.0 GiB is below 64 GiB (preflight_min_memory_gib, accepting down to 60.8 GiB "
        "with preflight_memory_tolerance_pct=5): add memory or lower preflight_min_memory_gib",
    }
    unknown = failed(evaluate(good_facts(memory_mib=None)))["memory"]["message"]
    assert unknown.startswith("system memory unknown (ansible_facts.memtotal_mb was not gathered)")


@pytest.mark.parametrize(("free", "ok"), [(100 * GIB, True), (100 * GIB - 1, False), (0, False)])
def test_disk_boundary(free, ok):
    result = evaluate(good_facts(disk_free_bytes=free))
    assert ("disk" in failed(result)) is not ok


def test_disk_messages():
    assert failed(evaluate(good_facts(disk_free_bytes=50 * GIB), {"min_disk_gib": 200}))["disk"]["message"] == (
        "free disk space at /opt/autoglm/models is 50.0 GiB, need 200 GiB (preflight_min_disk_gib): free space, "
        "mount a larger filesystem there, or lower preflight_min_disk_gib"
    )
    assert "unknown" in failed(evaluate(good_facts(disk_free_bytes=None)))["disk"]["message"]


@pytest.mark.parametrize(
    ("distribution", "version", "major", "ok"),
    [
        ("Debian", "12.5", "12", True),
        ("Debian", "11.9", "11", False),
        ("Ubuntu", "22.04", "22", True),
        ("Ubuntu", "23.10", "23", False),
        ("ubuntu", "24.04", "24", True),
        ("Rocky", "9.3", "9", True),
        ("Fedora", "40", "40", False),
        (None, None, None, False),
    ],
)
def test_os_gate(distribution, version, major, ok):
    facts = good_facts(distribution=distribution, distribution_version=version, distribution_major_version=major)
    assert ("os" in failed(evaluate(facts))) is not ok


def test_os_message_lists_the_supported_ones():
    facts = good_facts(distribution="Ubuntu", distribution_version="20.04", distribution_major_version="20")
    failure = failed(evaluate(facts, {"supported_os": ["Debian 12", "Ubuntu 22.04"]}))["os"]
    assert failure["variable"] == "preflight_supported_os"
    assert failure["message"] == (
        "Ubuntu 20.04 is not a supported OS; supported: Debian 12, Ubuntu 22.04 (preflight_supported_os). "
        'Install a supported OS, or add "Ubuntu 20" to preflight_supported_os at your own risk'
    )


def test_os_entry_without_version_matches_every_version():
    facts = good_facts(distribution="Ubuntu", distribution_version="20.04", distribution_major_version="20")
    assert "os" in evaluate(facts, {"supported_os": ["Ubuntu"]})["passed"]


def test_architecture_gate():
    assert "architecture" in evaluate(good_facts(architecture="aarch64"),
                                      {"supported_architectures": ["x86_64", "aarch64"]})["passed"]
    failure = failed(evaluate(good_facts(architecture="aarch64")))["architecture"]
    assert failure["message"] == (
        "architecture aarch64 is not supported; supported: x86_64 (preflight_supported_architectures)"
    )


@pytest.mark.parametrize(
    ("family", "package"), [("Debian", "linux-headers-6.1.0-18-amd64"), ("RedHat", "kernel-devel-6.1.0-18-amd64")]
)
@pytest.mark.parametrize("present", [False, None])
def test_kernel_headers_missing(family, package, present):
    failure = failed(evaluate(good_facts(os_family=family, kernel_headers_present=present)))["kernel_headers"]
    assert failure["variable"] == "preflight_dkms_driver"
    assert "running kernel 6.1.0-18-amd64" in failure["message"]
    assert "install %s" % package in failure["message"]


def test_kernel_headers_not_needed_without_dkms():
    result = evaluate(good_facts(kernel_headers_present=False), {"dkms_driver": False})
    assert result["failures"] == []


@pytest.mark.parametrize(
    ("driver", "cuda", "container", "allow", "ok"),
    [
        (None, "11.8", "12.9", False, True),  # no driver yet: the driver role installs one
        ("520.61.05", "11.8", None, False, True),
        ("520.61.04", "11.8", None, False, False),
        ("535.54.03", "11.8", "12.2", False, True),
        ("535.54.03", "11.8", "12.4", False, False),
        ("535.54.03", "11.8", "12.4", True, True),
        ("550.54.14", "11.8", "12.4.1", False, True),
    ],
)
def test_driver_cuda_gate(driver, cuda, container, allow, ok):
    facts = good_facts(gpu=gpu_fact(80, driver=driver), container_cuda_version=container)
    result = evaluate(facts, {"cuda_version": cuda, "allow_cuda_minor_compat": allow})
    assert ("driver_cuda" in failed(result)) is not ok


def test_driver_cuda_says_when_minor_compat_lets_it_through():
    facts = good_facts(gpu=gpu_fact(80, driver="535.54.03"), container_cuda_version="12.8")
    allowed = evaluate(facts, {"allow_cuda_minor_compat": True})
    assert "driver_cuda" in allowed["passed"]
    (warning,) = [w for w in allowed["warnings"] if w.startswith("driver_cuda:")]
    assert warning.startswith(
        "driver_cuda: the model container's declared CUDA 12.8 (preflight_container_cuda_version) "
        "passes only through minor-version compatibility (preflight_allow_cuda_minor_compat)")
    assert "PTX JIT" in warning
    # natively supported (the fleet's 11.8 on 535): no such warning
    assert not [w for w in evaluate(good_facts(gpu=gpu_fact(80, driver="535.54.03")),
                                    {"allow_cuda_minor_compat": True})["warnings"] if w.startswith("driver_cuda:")]


# Minor-version compatibility is allowed by default (the default driver runs the default CUDA image that way);
# these tests check the messages of a fleet that turned it off.
STRICT = {"allow_cuda_minor_compat": False}


def test_default_thresholds_accept_minor_compat_with_a_warning():
    result = evaluate(good_facts(gpu=gpu_fact(80, driver="535.54.03"), container_cuda_version="12.8"))
    assert "driver_cuda" not in failed(result)


def test_driver_cuda_messages():
    facts = good_facts(gpu=gpu_fact(80, driver="535.54.03"), container_cuda_version="12.4")
    failure = failed(evaluate(facts, STRICT))["driver_cuda"]
    assert failure["variable"] == "preflight_container_cuda_version"
    assert failure["message"] == (
        "installed driver 535.54.03 cannot run the model container's declared CUDA 12.4 "
        "(preflight_container_cuda_version), which needs >= 550.54.14; "
        "preflight_allow_cuda_minor_compat: true would accept it through minor-version compatibility; upgrade the "
        "NVIDIA driver (autoglm.fleet.nvidia_driver role) or use a CUDA release it supports"
    )
    old = failed(evaluate(good_facts(driver_version="470.82.01"), STRICT))["driver_cuda"]["message"]
    assert old.startswith("installed driver 470.82.01 cannot run the fleet's CUDA 11.8 (preflight_cuda_version), "
                          "which needs >= 520.61.05; preflight_allow_cuda_minor_compat: true would accept it")
    ancient = failed(evaluate(good_facts(driver_version="440.33.01"), STRICT))["driver_cuda"]["message"]
    assert "minor-version compatibility" not in ancient


def test_unknown_container_cuda_is_a_failure_not_a_guess():
    failure = failed(evaluate(good_facts(container_cuda_version="12.5"), STRICT))["driver_cuda"]
    assert failure["variable"] == "preflight_container_cuda_version"
    assert "CUDA 12.5 is not a known CUDA release" in failure["message"]
    old_cuda = {"cuda_version": "10.2", **STRICT}
    failure = failed(evaluate(good_facts(gpu=gpu_fact(80, driver=None)), old_cuda))["driver_cuda"]
    assert failure["variable"] == "preflight_cuda_version"


def test_explicit_driver_version_wins_over_the_gpu_fact():
    facts = good_facts(gpu=gpu_fact(80, driver="535.54.03"), driver_version="515.65.01")
    assert "515.65.01" in failed(evaluate(facts, STRICT))["driver_cuda"]["message"]


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [("3.10.0", "3.10", True), ("3.9.18", "3.10", False), ("3.12.0rc1", "3.10", True), ("3.11", "3.11.4", False),
     ("3.11.4", "3.11.4", True), ("4.0", "3.10", True), (None, "3.10", False), ("garbage", "3.10", False)],
)
def test_python_gate(have, need, ok):
    result = evaluate(good_facts(python_version=have), {"min_python": need})
    assert ("python" in failed(result)) is not ok
    if not ok:
        assert "runtime_python" in failed(result)["python"]["message"]


@pytest.mark.parametrize(
    ("thresholds", "match"),
    [
        ({"gpu_min_count": "two"}, "preflight_gpu_min_count must be a number >= 0, not 'two'"),
        ({"min_disk_gib": -1}, "preflight_min_disk_gib must be a number >= 0"),
        ({"min_memory_gib": True}, "preflight_min_memory_gib must be a number"),
        ({"memory_tolerance_pct": 100}, "preflight_memory_tolerance_pct must be below 100"),
        ({"supported_os": "Debian 12"}, "preflight_supported_os must be a list of strings"),
        ({"min_python": "three"}, "preflight_min_python 'three' is not a dotted version"),
        ({"min_disk": 100}, r"unknown preflight threshold\(s\): min_disk; known: allow_cuda_minor_compat"),
    ],
)
def test_malformed_thresholds_raise(thresholds, match):
    with pytest.raises(PreflightError, match=match):
        evaluate(good_facts(), thresholds)


def test_unknown_fact_key_and_non_dict_raise():
    with pytest.raises(PreflightError, match=r"unknown preflight fact\(s\): memtotal_mb"):
        evaluate(good_facts(memtotal_mb=1))
    with pytest.raises(PreflightError, match="must be a dict"):
        evaluate([])


def test_null_threshold_takes_the_default():
    assert evaluate(good_facts(), dict.fromkeys(DEFAULT_THRESHOLDS))["failures"] == []


def test_report_includes_warnings():
    result = evaluate(good_facts(gpu=None, disk_free_bytes=0), {"require_gpu": False})
    message = format_report(result)
    assert message.splitlines()[0] == "Preflight failed 1 gate(s):"
    assert message.splitlines()[2] == "Warnings:"
    assert message.splitlines()[3].startswith("- GPU gates (gpu_count, gpu_memory) waived")
