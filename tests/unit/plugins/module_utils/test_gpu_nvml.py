"""_nvml.gather_gpu_facts against a fake pynvml module (no GPU or driver exists here)."""

from __future__ import annotations

import types

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils import _nvml


class NVMLError(Exception):
    def __init__(self, value, text):
        super().__init__(text)
        self.value = value


def _error_class(name, code, text):
    return type(name, (NVMLError,), {"__init__": lambda self: NVMLError.__init__(self, code, text)})


NotSupported = _error_class("NVMLError_NotSupported", 3, "Not Supported")
NoPermission = _error_class("NVMLError_NoPermission", 4, "Insufficient Permissions")
DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", 9, "Driver Not Loaded")
LibraryNotFound = _error_class("NVMLError_LibraryNotFound", 12, "NVML Shared Library Not Found")
GpuIsLost = _error_class("NVMLError_GpuIsLost", 15, "GPU is lost")
Unknown = _error_class("NVMLError_Unknown", 999, "Unknown Error")

A100 = {
    "name": b"NVIDIA A100-SXM4-80GB",  # older nvidia-ml-py returns bytes
    "uuid": "GPU-11111111-2222-3333-4444-555555555555",
    "pci": "00000000:07:00.0",
    "memory": (85899345920, 1048576, 85898297344),
    "cc": (8, 0),
    "persistence": 1,
    "mig": [0, 1],
    "ecc": [1, 1],
    "temperature": 34,
    "power_mw": 400000,
}
RTX = {
    "name": "NVIDIA GeForce RTX 4090",
    "uuid": "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "pci": "00000000:41:00.0",
    "memory": (25757220864, 0, 25757220864),
    "cc": (8, 9),
    "persistence": 0,
    "mig": NotSupported,
    "ecc": NotSupported,
    "temperature": 41,
    "power_mw": 450000,
}


def fake_nvml(gpus=(), init_error=None, count_error=None, system=None):
    """A module object with the slice of the pynvml API that _nvml uses."""
    calls = {"init": 0, "shutdown": 0}
    system = {"driver": "535.54.03", "nvml": "12.535.54.03", "cuda": 12020, **(system or {})}
    nvml = types.ModuleType("pynvml")
    nvml.calls = calls
    nvml.NVMLError = NVMLError
    for cls in (NotSupported, NoPermission, DriverNotLoaded, LibraryNotFound, GpuIsLost, Unknown):
        setattr(nvml, cls.__name__, cls)
    nvml.NVML_ERROR_NOT_SUPPORTED = 3
    nvml.NVML_ERROR_LIBRARY_NOT_FOUND = 12
    nvml.NVML_ERROR_DRIVER_NOT_LOADED = 9
    nvml.NVML_TEMPERATURE_GPU = 0

    def value(entry, key):
        item = entry[key]
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item()
        return item

    def system_value(key):
        item = system[key]
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item()
        return item

    def init():
        calls["init"] += 1
        if init_error is not None:
            raise init_error()

    def shutdown():
        calls["shutdown"] += 1

    def count():
        if count_error is not None:
            raise count_error()
        return len(gpus)

    def handle(index):
        if index >= len(gpus):
            raise Unknown()
        if gpus[index] is GpuIsLost:
            raise GpuIsLost()
        return gpus[index]

    def memory(h):
        total, used, free = value(h, "memory")
        return types.SimpleNamespace(total=total, used=used, free=free)

    def temperature(h, sensor):
        assert sensor == 0
        return value(h, "temperature")

    nvml.nvmlInit = init
    nvml.nvmlShutdown = shutdown
    nvml.nvmlSystemGetDriverVersion = lambda: system_value("driver")
    nvml.nvmlSystemGetNVMLVersion = lambda: system_value("nvml")
    nvml.nvmlSystemGetCudaDriverVersion = lambda: system_value("cuda")
    nvml.nvmlDeviceGetCount = count
    nvml.nvmlDeviceGetHandleByIndex = handle
    nvml.nvmlDeviceGetName = lambda h: value(h, "name")
    nvml.nvmlDeviceGetUUID = lambda h: value(h, "uuid")
    nvml.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=value(h, "pci"))
    nvml.nvmlDeviceGetMemoryInfo = memory
    nvml.nvmlDeviceGetCudaComputeCapability = lambda h: value(h, "cc")
    nvml.nvmlDeviceGetPersistenceMode = lambda h: value(h, "persistence")
    nvml.nvmlDeviceGetMigMode = lambda h: value(h, "mig")
    nvml.nvmlDeviceGetEccMode = lambda h: value(h, "ecc")
    nvml.nvmlDeviceGetTemperature = temperature
    nvml.nvmlDeviceGetPowerManagementLimit = lambda h: value(h, "power_mw")
    return nvml


def test_two_gpus_report_every_field():
    nvml = fake_nvml(gpus=[A100, RTX])
    facts = _nvml.gather_gpu_facts(nvml)
    assert facts["gpu_count"] == 2
    assert facts["nvml_status"] == "ok"
    assert facts["nvml_error"] is None
    assert facts["driver_version"] == "535.54.03"
    assert facts["cuda_driver_version"] == "12.2"
    assert facts["nvml_version"] == "12.535.54.03"
    assert facts["errors"] == {}
    first, second = facts["gpus"]
    assert first == {
        "index": 0,
        "name": "NVIDIA A100-SXM4-80GB",
        "uuid": "GPU-11111111-2222-3333-4444-555555555555",
        "pci_bus_id": "00000000:07:00.0",
        "memory_total_bytes": 85899345920,
        "memory_used_bytes": 1048576,
        "memory_free_bytes": 85898297344,
        "compute_capability": "8.0",
        "persistence_mode": True,
        "mig_mode_current": False,
        "mig_mode_pending": True,
        "ecc_mode_current": True,
        "ecc_mode_pending": True,
        "temperature_celsius": 34,
        "power_limit_watts": 400.0,
        "errors": {},
    }
    assert list(first) == list(_nvml.GPU_FIELDS)
    assert second["index"] == 1
    assert second["compute_capability"] == "8.9"
    assert second["persistence_mode"] is False
    assert nvml.calls == {"init": 1, "shutdown": 1}


def test_not_supported_fields_degrade_to_null_without_errors():
    facts = _nvml.gather_gpu_facts(fake_nvml(gpus=[RTX]))
    gpu = facts["gpus"][0]
    assert facts["gpu_count"] == 1
    assert gpu["mig_mode_current"] is None and gpu["mig_mode_pending"] is None
    assert gpu["ecc_mode_current"] is None and gpu["ecc_mode_pending"] is None
    assert gpu["errors"] == {}
    assert gpu["memory_total_bytes"] == 25757220864


@pytest.mark.parametrize(
    ("key", "fields"),
    [
        ("name", ["name"]),
        ("uuid", ["uuid"]),
        ("pci", ["pci_bus_id"]),
        ("memory", ["memory_total_bytes", "memory_used_bytes", "memory_free_bytes"]),
        ("cc", ["compute_capability"]),
        ("persistence", ["persistence_mode"]),
        ("mig", ["mig_mode_current", "mig_mode_pending"]),
        ("ecc", ["ecc_mode_current", "ecc_mode_pending"]),
        ("temperature", ["temperature_celsius"]),
        ("power_mw", ["power_limit_watts"]),
    ],
)
@pytest.mark.parametrize("error", [NotSupported, NoPermission])
def test_each_field_error_nulls_only_that_field(key, fields, error):
    gpu = dict(A100, **{key: error})
    facts = _nvml.gather_gpu_facts(fake_nvml(gpus=[gpu]))
    assert facts["nvml_status"] == "ok"
    entry = facts["gpus"][0]
    for field in fields:
        assert entry[field] is None
    others = [f for f in _nvml.GPU_FIELDS if f not in fields and f != "errors"]
    assert all(entry[f] is not None for f in others), entry
    if error is NotSupported:
        assert entry["errors"] == {}
    else:
        assert len(entry["errors"]) == 1
        assert "Insufficient Permissions (NVMLError_NoPermission)" in next(iter(entry["errors"].values()))


def test_lost_gpu_keeps_the_others():
    facts = _nvml.gather_gpu_facts(fake_nvml(gpus=[A100, GpuIsLost]))
    assert facts["gpu_count"] == 2
    assert facts["gpus"][0]["name"] == "NVIDIA A100-SXM4-80GB"
    lost = facts["gpus"][1]
    assert lost["index"] == 1
    assert lost["name"] is None and lost["memory_total_bytes"] is None
    assert "GPU is lost" in lost["errors"]["handle"]
    assert set(lost) == set(_nvml.GPU_FIELDS)


def test_system_field_not_supported_and_error():
    facts = _nvml.gather_gpu_facts(fake_nvml(gpus=[A100], system={"cuda": NotSupported, "nvml": Unknown}))
    assert facts["cuda_driver_version"] is None
    assert facts["nvml_version"] is None
    assert facts["driver_version"] == "535.54.03"
    assert facts["errors"] == {"nvml_version": "Unknown Error (NVMLError_Unknown)"}
    assert facts["nvml_status"] == "ok" and facts["nvml_error"] is None


def test_pynvml_not_installed():
    facts = _nvml.gather_gpu_facts(load=lambda: None)
    assert facts["gpu_count"] == 0
    assert facts["gpus"] == []
    assert facts["nvml_status"] == "pynvml_missing"
    assert facts["nvml_error"].startswith("NVML library not found: install nvidia-ml-py in the runtime venv (")


def test_default_loader_handles_missing_module(monkeypatch):
    def missing(name):
        raise ImportError("No module named %r" % name)

    monkeypatch.setattr(_nvml.importlib, "import_module", missing)
    facts = _nvml.gather_gpu_facts()
    assert facts["nvml_status"] == "pynvml_missing"
    assert facts["gpu_count"] == 0


@pytest.mark.parametrize(
    ("init_error", "status", "text"),
    [
        (LibraryNotFound, "no_driver", "libnvidia-ml.so not found (no driver installed)"),
        (DriverNotLoaded, "driver_not_loaded", "NVIDIA driver not loaded"),
        (NoPermission, "error", "NVML initialisation failed: Insufficient Permissions (NVMLError_NoPermission)"),
    ],
)
def test_init_errors(init_error, status, text):
    nvml = fake_nvml(gpus=[A100], init_error=init_error)
    facts = _nvml.gather_gpu_facts(nvml)
    assert facts == _nvml.empty_facts(status, facts["nvml_error"])
    assert facts["gpu_count"] == 0
    assert facts["nvml_error"].startswith(text)
    assert nvml.calls == {"init": 1, "shutdown": 0}


def test_error_recognised_by_code_when_class_is_missing():
    nvml = fake_nvml(init_error=LibraryNotFound)
    del nvml.NVMLError_LibraryNotFound
    assert _nvml.gather_gpu_facts(nvml)["nvml_status"] == "no_driver"


def test_no_gpu():
    nvml = fake_nvml(gpus=[])
    facts = _nvml.gather_gpu_facts(nvml)
    assert facts["gpu_count"] == 0
    assert facts["nvml_status"] == "no_gpu"
    assert facts["nvml_error"].startswith("no GPU")
    assert facts["driver_version"] == "535.54.03"
    assert nvml.calls == {"init": 1, "shutdown": 1}


def test_count_error():
    nvml = fake_nvml(gpus=[A100], count_error=Unknown)
    facts = _nvml.gather_gpu_facts(nvml)
    assert facts["gpu_count"] == 0
    assert facts["nvml_status"] == "error"
    assert facts["nvml_error"] == "NVML could not count the GPUs: Unknown Error (NVMLError_Unknown)"
    assert nvml.calls["shutdown"] == 1


@pytest.mark.parametrize(("value", "text"), [(11080, "11.8"), (12020, "12.2"), (12090, "12.9"), (13000, "13.0")])
def test_cuda_version_from_int(value, text):
    assert _nvml.cuda_version_from_int(value) == text


def test_real_pynvml_on_a_host_without_driver():
    """The installed nvidia-ml-py, on this GPU-less host, gives the no-driver answer, not a traceback."""
    import pynvml
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        facts = _nvml.gather_gpu_facts()
        assert facts["nvml_status"] == "no_driver"
        assert facts["gpu_count"] == 0
    else:
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        assert _nvml.gather_gpu_facts()["gpu_count"] == count
