# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read GPU facts through NVML (nvidia-ml-py), for the gpu_facts module.

gather_gpu_facts() never raises for the conditions a fleet meets: no nvidia-ml-py, no
libnvidia-ml.so (no driver), driver not loaded, no GPU. Each gives gpu_count 0, an nvml_status
keyword and an nvml_error sentence. A field a GPU does not support (NVMLError_NotSupported) is None;
any other per-field NVML error is None too and is recorded in that GPU's `errors`.
"""

from __future__ import annotations

import contextlib
import importlib

PYNVML_MISSING = (
    "NVML library not found: install nvidia-ml-py in the runtime venv (the autoglm.fleet.runtime role does) "
    "and run this module with that venv's Python (ansible_python_interpreter)"
)
LIBRARY_NOT_FOUND = (
    "libnvidia-ml.so not found (no driver installed): install the NVIDIA driver (autoglm.fleet.nvidia_driver role)"
)
DRIVER_NOT_LOADED = (
    "NVIDIA driver not loaded: the nvidia kernel module is not running; reboot after a driver install "
    "or load it with 'modprobe nvidia' and check dmesg"
)
NO_GPU = "no GPU: NVML is working but found no NVIDIA GPU on this host"

# nvml_status values
STATUS_OK = "ok"
STATUS_PYNVML_MISSING = "pynvml_missing"
STATUS_NO_DRIVER = "no_driver"
STATUS_DRIVER_NOT_LOADED = "driver_not_loaded"
STATUS_NO_GPU = "no_gpu"
STATUS_ERROR = "error"

# Per-GPU keys, in the order they are reported (documented in plugins/modules/gpu_facts.py RETURN).
GPU_FIELDS = (
    "index",
    "name",
    "uuid",
    "pci_bus_id",
    "memory_total_bytes",
    "memory_used_bytes",
    "memory_free_bytes",
    "compute_capability",
    "persistence_mode",
    "mig_mode_current",
    "mig_mode_pending",
    "ecc_mode_current",
    "ecc_mode_pending",
    "temperature_celsius",
    "power_limit_watts",
    "errors",
)

# NVML constants, used when the pynvml in use lacks them (they are ABI values, stable across releases).
_NVML_TEMPERATURE_GPU = 0


def import_pynvml():
    """Return the pynvml module, or None when nvidia-ml-py is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _error_class(nvml, name):
    cls = getattr(nvml, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def _is_error(nvml, exc, class_name, code_name):
    """Whether `exc` is NVML error `class_name` (by class, or by its numeric value as a fallback)."""
    cls = _error_class(nvml, class_name)
    if cls is not None and isinstance(exc, cls):
        return True
    code = getattr(nvml, code_name, None)
    return code is not None and getattr(exc, "value", None) == code


def _describe(exc):
    text = str(exc) or type(exc).__name__
    return "%s (%s)" % (text, type(exc).__name__) if type(exc).__name__ not in text else text


def empty_facts(status, error):
    """The facts of a host where NVML gives no GPUs."""
    return {
        "gpu_count": 0,
        "driver_version": None,
        "cuda_driver_version": None,
        "nvml_version": None,
        "nvml_status": status,
        "nvml_error": error,
        "gpus": [],
        "errors": {},
    }


def cuda_version_from_int(value):
    """NVML's CUDA driver version integer (12020) as "12.2"."""
    if value is None:
        return None
    value = int(value)
    return "%d.%d" % (value // 1000, (value % 1000) // 10)


class _Reader:
    """Calls NVML functions, turning per-field errors into None (recorded unless NotSupported)."""

    def __init__(self, nvml, errors):
        self.nvml = nvml
        self.errors = errors
        self.nvml_error = _error_class(nvml, "NVMLError") or Exception

    def __call__(self, field, func_name, *args):
        func = getattr(self.nvml, func_name, None)
        if func is None:
            self.errors[field] = "%s is not available in this nvidia-ml-py" % func_name
            return None
        try:
            return func(*args)
        except self.nvml_error as exc:
            if not _is_error(self.nvml, exc, "NVMLError_NotSupported", "NVML_ERROR_NOT_SUPPORTED"):
                self.errors[field] = _describe(exc)
            return None


def _enabled(value):
    return None if value is None else bool(value)


def _pair(value):
    if value is None:
        return None, None
    current, pending = value
    return _enabled(current), _enabled(pending)


def _gpu_facts(nvml, index):
    errors = {}
    read = _Reader(nvml, errors)
    gpu = {"index": index}
    handle = read("handle", "nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        for key in GPU_FIELDS:
            gpu.setdefault(key, None)
        gpu["errors"] = errors
        return gpu

    gpu["name"] = _text(read("name", "nvmlDeviceGetName", handle))
    gpu["uuid"] = _text(read("uuid", "nvmlDeviceGetUUID", handle))
    pci = read("pci_bus_id", "nvmlDeviceGetPciInfo", handle)
    gpu["pci_bus_id"] = _text(getattr(pci, "busId", None)) if pci is not None else None

    memory = read("memory", "nvmlDeviceGetMemoryInfo", handle)
    for key in ("total", "used", "free"):
        gpu["memory_%s_bytes" % key] = int(getattr(memory, key)) if memory is not None else None

    capability = read("compute_capability", "nvmlDeviceGetCudaComputeCapability", handle)
    gpu["compute_capability"] = "%d.%d" % tuple(capability) if capability is not None else None

    gpu["persistence_mode"] = _enabled(read("persistence_mode", "nvmlDeviceGetPersistenceMode", handle))
    gpu["mig_mode_current"], gpu["mig_mode_pending"] = _pair(read("mig_mode", "nvmlDeviceGetMigMode", handle))
    gpu["ecc_mode_current"], gpu["ecc_mode_pending"] = _pair(read("ecc_mode", "nvmlDeviceGetEccMode", handle))

    sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", _NVML_TEMPERATURE_GPU)
    temperature = read("temperature_celsius", "nvmlDeviceGetTemperature", handle, sensor)
    gpu["temperature_celsius"] = int(temperature) if temperature is not None else None

    milliwatts = read("power_limit_watts", "nvmlDeviceGetPowerManagementLimit", handle)
    gpu["power_limit_watts"] = milliwatts / 1000.0 if milliwatts is not None else None

    gpu["errors"] = errors
    return {key: gpu[key] for key in GPU_FIELDS}


def gather_gpu_facts(nvml=None, load=import_pynvml):
    """Return the GPU facts of this host as a dict (see plugins/modules/gpu_facts.py RETURN).

    `nvml` is the pynvml module to use; when None it is imported through `load` (which returns None
    when nvidia-ml-py is missing). Tests pass a fake module here.
    """
    if nvml is None:
        nvml = load()
        if nvml is None:
            return empty_facts(STATUS_PYNVML_MISSING, PYNVML_MISSING)

    nvml_error = _error_class(nvml, "NVMLError") or Exception
    try:
        nvml.nvmlInit()
    except nvml_error as exc:
        if _is_error(nvml, exc, "NVMLError_LibraryNotFound", "NVML_ERROR_LIBRARY_NOT_FOUND"):
            return empty_facts(STATUS_NO_DRIVER, LIBRARY_NOT_FOUND)
        if _is_error(nvml, exc, "NVMLError_DriverNotLoaded", "NVML_ERROR_DRIVER_NOT_LOADED"):
            return empty_facts(STATUS_DRIVER_NOT_LOADED, DRIVER_NOT_LOADED)
        return empty_facts(STATUS_ERROR, "NVML initialisation failed: %s" % _describe(exc))

    try:
        system_errors = {}
        read = _Reader(nvml, system_errors)
        facts = empty_facts(STATUS_OK, None)
        facts["errors"] = system_errors
        facts["driver_version"] = _text(read("driver_version", "nvmlSystemGetDriverVersion"))
        facts["nvml_version"] = _text(read("nvml_version", "nvmlSystemGetNVMLVersion"))
        facts["cuda_driver_version"] = cuda_version_from_int(
            read("cuda_driver_version", "nvmlSystemGetCudaDriverVersion")
        )
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml_error as exc:
            facts.update(nvml_status=STATUS_ERROR, nvml_error="NVML could not count the GPUs: %s" % _describe(exc))
            return facts
        if count == 0:
            facts.update(nvml_status=STATUS_NO_GPU, nvml_error=NO_GPU)
            return facts
        facts["gpus"] = [_gpu_facts(nvml, index) for index in range(count)]
        facts["gpu_count"] = count
        return facts
    finally:
        with contextlib.suppress(nvml_error):
            nvml.nvmlShutdown()
