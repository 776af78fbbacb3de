# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The preflight gates of a fleet host, as one pure function.

evaluate(facts, thresholds) checks every gate and returns all failures of the host at once, each
with a message that names the variable to change, plus warnings for what was waived or could not
be checked yet. Nothing is waived silently. The `preflight` role calls it through the
autoglm.fleet.preflight_report filter (plugins/filter/preflight.py).
"""

from __future__ import annotations

import math
import re

from ansible_collections.autoglm.fleet.plugins.module_utils._cuda_compat import (
    MINOR_COMPAT_FLOOR,
    CudaCompatError,
    check_driver_cuda,
    compare_driver_versions,
    min_driver_for_cuda,
    parse_cuda_version,
)

GIB = 1024**3

# Threshold key -> default. The role variable of each is "preflight_" + key.
DEFAULT_THRESHOLDS = {
    "require_gpu": True,
    "gpu_min_count": 1,
    "gpu_min_memory_gib": 24,
    # NVML reports less than the marketed size (an A10 or L4 "24 GB" card shows about 22.5 GiB).
    "gpu_memory_tolerance_pct": 10,
    "min_memory_gib": 64,
    # MemTotal leaves out what firmware and the kernel reserve (a 64 GiB server shows about 62.5 GiB).
    "memory_tolerance_pct": 5,
    "min_disk_gib": 100,
    "supported_os": [
        "Debian 12",
        "Ubuntu 22.04",
        "Ubuntu 24.04",
        "RedHat 8",
        "RedHat 9",
        "Rocky 8",
        "Rocky 9",
        "AlmaLinux 8",
        "AlmaLinux 9",
    ],
    "supported_architectures": ["x86_64"],
    "dkms_driver": True,
    "cuda_version": "11.8",
    "allow_cuda_minor_compat": True,
    "min_python": "3.10",
}

# Fact key -> where the role takes it from (used in "could not determine" messages).
FACT_SOURCES = {
    "gpu": "ansible_facts.gpu from autoglm.fleet.gpu_facts",
    "pci_gpu_count": "the number of NVIDIA GPUs on the PCI bus (lspci -d 10de:), for hosts without a driver yet",
    "memory_mib": "ansible_facts.memtotal_mb",
    "disk_path": "the path the model weights go to",
    "disk_free_bytes": "free bytes of the filesystem at disk_path",
    "os_family": "ansible_facts.os_family",
    "distribution": "ansible_facts.distribution",
    "distribution_version": "ansible_facts.distribution_version",
    "distribution_major_version": "ansible_facts.distribution_major_version",
    "architecture": "ansible_facts.architecture",
    "python_version": "the version of the Python that creates the runtime venv",
    "kernel": "ansible_facts.kernel",
    "kernel_headers_present": "whether /lib/modules/<kernel>/build exists",
    "driver_version": "the installed NVIDIA driver version (defaults to the gpu fact's driver_version)",
    "container_cuda_version": "the CUDA version the model container declares (preflight_container_cuda_version)",
}

GPU_GATES = ("gpu_count", "gpu_memory")


class PreflightError(ValueError):
    """The thresholds or facts given to evaluate() are malformed (a bug in the caller, not a failed gate)."""


def var(key):
    """The role variable behind threshold `key`."""
    return "preflight_" + key


def _gib(num_bytes):
    return "%.1f GiB" % (num_bytes / float(GIB))


def _version_tuple(value, what):
    text = str(value).strip()
    parts = text.split(".")
    if not text or not all(part.isdigit() for part in parts):
        raise PreflightError("%s %r is not a dotted version such as 3.10" % (what, value))
    return tuple(int(part) for part in parts)


def _number(thresholds, key):
    value = thresholds[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise PreflightError("%s must be a number >= 0, not %r" % (var(key), value))
    return value


def _merge(thresholds):
    unknown = sorted(set(thresholds or {}) - set(DEFAULT_THRESHOLDS))
    if unknown:
        raise PreflightError(
            "unknown preflight threshold(s): %s; known: %s"
            % (", ".join(unknown), ", ".join(sorted(DEFAULT_THRESHOLDS)))
        )
    merged = dict(DEFAULT_THRESHOLDS)
    merged.update({key: value for key, value in (thresholds or {}).items() if value is not None})
    for key in ("gpu_min_count", "gpu_min_memory_gib", "gpu_memory_tolerance_pct", "min_memory_gib",
                "memory_tolerance_pct", "min_disk_gib"):
        _number(merged, key)
    for key in ("gpu_memory_tolerance_pct", "memory_tolerance_pct"):
        if merged[key] >= 100:
            raise PreflightError("%s must be below 100, not %r" % (var(key), merged[key]))
    for key in ("supported_os", "supported_architectures"):
        if isinstance(merged[key], str) or not isinstance(merged[key], (list, tuple)):
            raise PreflightError("%s must be a list of strings, not %r" % (var(key), merged[key]))
    _version_tuple(merged["min_python"], var("min_python"))
    return merged


class _Gates:
    def __init__(self):
        self.failures = []
        self.warnings = []
        self.passed = []

    def fail(self, gate, variable, message):
        self.failures.append({"gate": gate, "variable": variable, "message": message})

    def ok(self, gate):
        self.passed.append(gate)


def _gpu_count_gate(gates, facts, t):
    gpu = facts.get("gpu") or {}
    nvml_count = int(gpu.get("gpu_count") or 0)
    pci_count = facts.get("pci_gpu_count")
    nvml_note = gpu.get("nvml_error") if facts.get("gpu") is not None else "GPU facts were not gathered"
    if nvml_count > 0:
        count, source = nvml_count, "NVML"
    elif pci_count is not None:
        count, source = int(pci_count), "on the PCI bus; NVML: %s" % nvml_note
    else:
        count, source = 0, "NVML: %s" % nvml_note
    need = int(t["gpu_min_count"])
    if count >= need:
        gates.ok("gpu_count")
        return
    gates.fail(
        "gpu_count",
        var("gpu_min_count"),
        "found %d NVIDIA GPU(s) (%s), need at least %d (%s): fix the host's GPUs or driver, lower %s, "
        "or set %s: false on a host without GPUs" % (
            count, source, need, var("gpu_min_count"), var("gpu_min_count"), var("require_gpu")),
    )


def _gpu_memory_gate(gates, facts, t):
    gpu = facts.get("gpu") or {}
    gpus = gpu.get("gpus") or []
    minimum = float(t["gpu_min_memory_gib"])
    floor = _floor_bytes(minimum, t["gpu_memory_tolerance_pct"])
    if not gpus:
        if facts.get("pci_gpu_count"):
            gates.warnings.append(
                "gpu_memory not checked: NVML cannot read the memory of the %d GPU(s) on the PCI bus (%s); it is "
                "checked when preflight runs again after the driver install" % (
                    int(facts["pci_gpu_count"]), gpu.get("nvml_error") or "GPU facts were not gathered")
            )
        else:
            gates.ok("gpu_memory")  # no GPU to check; the gpu_count gate reports a missing one
        return
    short = []
    for entry in gpus:
        total = entry.get("memory_total_bytes")
        label = "GPU %s (%s)" % (entry.get("index"), entry.get("name") or "unknown model")
        if total is None:
            short.append("%s: memory unknown (%s)" % (label, (entry.get("errors") or {}).get("memory", "not reported")))
        elif total < floor:
            short.append("%s: %s" % (label, _gib(total)))
    if not short:
        gates.ok("gpu_memory")
        return
    gates.fail(
        "gpu_memory",
        var("gpu_min_memory_gib"),
        "GPU memory below %s GiB (%s, accepting down to %s with %s=%s): %s; use GPUs with more memory or lower %s"
        % (_fmt(minimum), var("gpu_min_memory_gib"), _gib(floor), var("gpu_memory_tolerance_pct"),
           _fmt(t["gpu_memory_tolerance_pct"]), "; ".join(short), var("gpu_min_memory_gib")),
    )


def _floor_bytes(minimum_gib, tolerance_pct):
    """The fewest bytes accepted for `minimum_gib` less `tolerance_pct` percent, rounded down to a byte."""
    return math.floor(minimum_gib * GIB * (100 - tolerance_pct) / 100.0)


def _fmt(number):
    return ("%d" % number) if float(number).is_integer() else ("%g" % number)


def _memory_gate(gates, facts, t):
    mib = facts.get("memory_mib")
    minimum = float(t["min_memory_gib"])
    floor = _floor_bytes(minimum, t["memory_tolerance_pct"])
    if mib is None:
        gates.fail("memory", var("min_memory_gib"),
                   "system memory unknown (%s was not gathered); gather facts before preflight" % FACT_SOURCES[
                       "memory_mib"])
        return
    total = float(mib) * 1024**2
    if total >= floor:
        gates.ok("memory")
        return
    gates.fail(
        "memory",
        var("min_memory_gib"),
        "system memory %s is below %s GiB (%s, accepting down to %s with %s=%s): add memory or lower %s"
        % (_gib(total), _fmt(minimum), var("min_memory_gib"), _gib(floor), var("memory_tolerance_pct"),
           _fmt(t["memory_tolerance_pct"]), var("min_memory_gib")),
    )


def _disk_gate(gates, facts, t):
    free = facts.get("disk_free_bytes")
    path = facts.get("disk_path") or "the model path"
    minimum = float(t["min_disk_gib"])
    if free is None:
        gates.fail("disk", var("min_disk_gib"),
                   "free disk space at %s unknown (no mounted filesystem found for it); create the path's "
                   "filesystem or check the model path" % path)
        return
    if free >= minimum * GIB:
        gates.ok("disk")
        return
    gates.fail(
        "disk",
        var("min_disk_gib"),
        "free disk space at %s is %s, need %s GiB (%s): free space, mount a larger filesystem there, or lower %s"
        % (path, _gib(free), _fmt(minimum), var("min_disk_gib"), var("min_disk_gib")),
    )


def _os_matches(entry, distribution, version, major):
    words = str(entry).split()
    if not words or words[0].lower() != str(distribution).lower():
        return False
    if len(words) == 1:
        return True
    wanted = words[1]
    return wanted in (str(version), str(major))


def _os_gate(gates, facts, t):
    distribution = facts.get("distribution")
    version = facts.get("distribution_version")
    major = facts.get("distribution_major_version") or (str(version).split(".", 1)[0] if version else None)
    supported = ", ".join(str(entry) for entry in t["supported_os"])
    if distribution and any(_os_matches(e, distribution, version, major) for e in t["supported_os"]):
        gates.ok("os")
        return
    gates.fail(
        "os",
        var("supported_os"),
        "%s %s is not a supported OS; supported: %s (%s). Install a supported OS, or add \"%s %s\" to %s at your "
        "own risk" % (distribution or "unknown OS", version or "", supported or "none", var("supported_os"),
                      distribution or "<distribution>", major or "<version>", var("supported_os")),
    )


def _architecture_gate(gates, facts, t):
    arch = facts.get("architecture")
    supported = [str(a) for a in t["supported_architectures"]]
    if arch in supported:
        gates.ok("architecture")
        return
    gates.fail(
        "architecture",
        var("supported_architectures"),
        "architecture %s is not supported; supported: %s (%s)" % (
            arch or "unknown", ", ".join(supported) or "none", var("supported_architectures")),
    )


def _kernel_headers_gate(gates, facts, t):
    if not t["dkms_driver"]:
        gates.ok("kernel_headers")
        return
    if facts.get("kernel_headers_present"):
        gates.ok("kernel_headers")
        return
    kernel = facts.get("kernel") or "<running kernel>"
    prefix = "kernel-devel" if facts.get("os_family") == "RedHat" else "linux-headers"
    package = "%s-%s" % (prefix, kernel)
    gates.fail(
        "kernel_headers",
        var("dkms_driver"),
        "kernel headers for the running kernel %s are not installed and the NVIDIA driver is built with DKMS (%s): "
        "install %s (or reboot into a kernel whose headers are installed), or set %s: false when the driver does "
        "not need building" % (kernel, var("dkms_driver"), package, var("dkms_driver")),
    )


def _driver_cuda_gate(gates, facts, t):
    gpu = facts.get("gpu") or {}
    driver = facts.get("driver_version") or gpu.get("driver_version")
    allow = bool(t["allow_cuda_minor_compat"])
    wanted = [("the fleet's CUDA %s" % t["cuda_version"], t["cuda_version"], var("cuda_version"))]
    container = facts.get("container_cuda_version")
    if container not in (None, ""):
        wanted.append(("the model container's declared CUDA %s" % container, container,
                       "preflight_container_cuda_version"))
    problems = []
    variables = []
    for label, cuda, source_var in wanted:
        label = "%s (%s)" % (label, source_var)
        try:
            need = min_driver_for_cuda(cuda, allow_minor_compat=allow)
        except CudaCompatError as exc:
            problems.append("%s: %s" % (label, exc))
            variables.append(source_var)
            continue
        if driver is None:
            continue
        try:
            check = check_driver_cuda(driver, cuda, allow_minor_compat=allow)
        except CudaCompatError as exc:
            problems.append("installed driver: %s" % exc)
            variables.append(source_var)
            continue
        if check["via_minor_compat"]:
            gates.warnings.append("driver_cuda: %s passes only through minor-version compatibility (%s): %s"
                                  % (label, var("allow_cuda_minor_compat"), check["note"]))
        if check["ok"]:
            continue
        text = "installed driver %s cannot run %s, which needs >= %s" % (driver, label, need)
        floor = MINOR_COMPAT_FLOOR.get(parse_cuda_version(cuda)[0])
        if not allow and floor and compare_driver_versions(driver, floor) >= 0:
            text += "; %s: true would accept it through minor-version compatibility" % var("allow_cuda_minor_compat")
        problems.append(text)
        variables.append(source_var)
    if not problems:
        gates.ok("driver_cuda")
        return
    gates.fail(
        "driver_cuda",
        variables[0],
        "%s; upgrade the NVIDIA driver (autoglm.fleet.nvidia_driver role) or use a CUDA release it supports"
        % "; ".join(problems),
    )


def _python_gate(gates, facts, t):
    have = facts.get("python_version")
    need = _version_tuple(t["min_python"], var("min_python"))
    if have is not None:
        match = re.match(r"\s*(\d+(?:\.\d+)*)", str(have))
        have_tuple = tuple(int(part) for part in match.group(1).split(".")) if match else None
        if have_tuple is not None and have_tuple[: len(need)] >= need:
            gates.ok("python")
            return
    gates.fail(
        "python",
        var("min_python"),
        "Python %s for the runtime venv is older than %s (%s) or unknown: install Python >= %s and point "
        "runtime_python at it (RHEL 8: python3.11)"
        % (have or "unknown", t["min_python"], var("min_python"), t["min_python"]),
    )


def evaluate(facts, thresholds=None):
    """Check every preflight gate of one host.

    Returns {"failures": [{"gate", "variable", "message"}], "warnings": [str], "passed": [gate],
    "waived": [gate]}. Raises PreflightError for malformed thresholds or unknown fact keys.
    """
    if not isinstance(facts, dict):
        raise PreflightError("preflight facts must be a dict, not %r" % (type(facts).__name__,))
    unknown = sorted(set(facts) - set(FACT_SOURCES))
    if unknown:
        raise PreflightError(
            "unknown preflight fact(s): %s; known: %s" % (", ".join(unknown), ", ".join(sorted(FACT_SOURCES)))
        )
    t = _merge(thresholds)
    require_gpu = bool(t["require_gpu"])

    gpu_gates = _Gates()
    _gpu_count_gate(gpu_gates, facts, t)
    _gpu_memory_gate(gpu_gates, facts, t)

    gates = _Gates()
    waived = []
    if require_gpu:
        gates.failures.extend(gpu_gates.failures)
        gates.warnings.extend(gpu_gates.warnings)
        gates.passed.extend(gpu_gates.passed)
    else:
        waived = list(GPU_GATES)
        detail = "; ".join(["%s would fail: %s" % (f["gate"], f["message"]) for f in gpu_gates.failures]
                           + gpu_gates.warnings)
        gates.warnings.append(
            "GPU gates (%s) waived because %s is false%s" % (
                ", ".join(GPU_GATES), var("require_gpu"), (": " + detail) if detail else " (they would pass)")
        )

    _memory_gate(gates, facts, t)
    _disk_gate(gates, facts, t)
    _os_gate(gates, facts, t)
    _architecture_gate(gates, facts, t)
    _kernel_headers_gate(gates, facts, t)
    _driver_cuda_gate(gates, facts, t)
    _python_gate(gates, facts, t)
    return {"failures": gates.failures, "warnings": gates.warnings, "passed": gates.passed, "waived": waived}


def format_report(result, host=None):
    """One message for all failed gates of a host ("" when none failed)."""
    failures = result.get("failures") or []
    if not failures:
        return ""
    lines = ["Preflight failed %d gate(s)%s:" % (len(failures), (" on %s" % host) if host else "")]
    lines.extend("- %s: %s" % (f["gate"], f["message"]) for f in failures)
    warnings = result.get("warnings") or []
    if warnings:
        lines.append("Warnings:")
        lines.extend("- %s" % w for w in warnings)
    return "\n".join(lines)
