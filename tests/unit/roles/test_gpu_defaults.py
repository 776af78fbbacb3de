"""The GPU defaults fit together: the driver branch nvidia_driver installs, the CUDA image build.sh makes and the gate.

No GPU needed: the defaults are read from the files that set them (roles/*/defaults/main.yml, the CUDA variant's
requirements file, whose "# cuda-version:" line build.sh enforces against the torch wheel) and put through the
same gate model_serve and preflight use (autoglm.fleet.cuda_driver_check). The table of docs/gpu.md, "Supported
driver / image pairs", is PAIRS below.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible_collections.autoglm.fleet.plugins.module_utils._cuda_compat import check_driver_cuda

ROOT = Path(__file__).resolve().parents[3]
SERVER = ROOT / "containers" / "model-server"


def defaults(role):
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def requirements(name):
    text = (SERVER / name).read_text()
    pins = dict(line.split("==", 1) for line in text.splitlines() if "==" in line and not line.startswith("#"))
    declared = re.search(r"^# cuda-version: *([0-9.]+) *$", text, re.M)
    return pins, declared.group(1) if declared else None


def branch_floor(branch):
    """The oldest driver of a branch, as the nvidia_driver role checks it (<branch>.0.0)."""
    return "%s.0.0" % branch


def test_default_cuda_image_is_a_cuda_12_build_of_pypi_torch():
    pins, declared = requirements("requirements-cuda.txt")
    assert declared == "12.8"
    # torch 2.10.0's wheel metadata on PyPI pins the CUDA 12.8 runtime; the file pins the same, and every
    # nvidia-*-cu12 wheel belongs to CUDA 12 (none of the -cu13 set that torch 2.11 and later pull in)
    assert pins["torch"] == "2.10.0"
    assert pins["nvidia-cuda-runtime-cu12"].startswith(declared + ".")
    assert pins["nvidia-cuda-nvrtc-cu12"].startswith(declared + ".")
    assert not [name for name in pins if name.endswith("-cu13") or name == "cuda-toolkit"]
    # the CPU variant keeps its own torch
    cpu_pins, cpu_declared = requirements("requirements.txt")
    assert (cpu_pins["torch"], cpu_declared) == ("2.13.0", None)
    # the server's own dependencies are the same in both variants
    shared = set(cpu_pins) - {"torch"}
    assert {name: pins[name] for name in shared} == {name: cpu_pins[name] for name in shared}


def test_default_driver_runs_the_default_cuda_image_through_the_gate():
    branch = defaults("nvidia_driver")["nvidia_driver_branch"]
    _pins, image_cuda = requirements("requirements-cuda.txt")
    check = check_driver_cuda(branch_floor(branch), image_cuda, allow_minor_compat=True)
    assert check["ok"], check["note"]
    # and the gate says how: 535 runs CUDA 12.2 natively, 12.8 only through minor-version compatibility
    assert (check["native"], check["via_minor_compat"]) == (False, True)
    assert "PTX JIT" in check["note"]
    # without minor-version compatibility the default pair would be refused: the roles must allow it
    assert not check_driver_cuda(branch_floor(branch), image_cuda)["ok"]


def test_default_driver_runs_the_host_toolkit_natively():
    role = defaults("nvidia_driver")
    check = check_driver_cuda(branch_floor(role["nvidia_driver_branch"]), role["nvidia_driver_cuda_version"])
    assert check["native"] and not role["nvidia_driver_allow_cuda_minor_compat"]
    assert defaults("preflight")["preflight_cuda_version"] == role["nvidia_driver_cuda_version"]


def test_role_defaults_allow_what_the_default_pair_needs():
    assert defaults("model_serve")["model_serve_cuda_allow_minor_compat"] is True
    assert defaults("preflight")["preflight_allow_cuda_minor_compat"] is True


# docs/gpu.md, "Supported driver / image pairs": (driver, CUDA, how it runs with minor-version compatibility allowed)
PAIRS = [
    ("535.0.0", "11.8", "native"),
    ("535.0.0", "12.8", "minor_compat"),
    ("535.0.0", "13.0", "refused"),
    ("550.54.14", "12.8", "minor_compat"),
    ("570.26", "12.8", "native"),
    ("570.26", "13.0", "refused"),
    ("580.65.06", "11.8", "native"),
    ("580.65.06", "12.8", "native"),
    ("580.65.06", "13.0", "native"),
    ("470.82.01", "11.8", "minor_compat"),
    ("470.82.01", "12.8", "refused"),
]


@pytest.mark.parametrize(("driver", "cuda", "how"), PAIRS)
def test_supported_pairs_table(driver, cuda, how):
    check = check_driver_cuda(driver, cuda, allow_minor_compat=True)
    got = "native" if check["native"] else "minor_compat" if check["via_minor_compat"] else "refused"
    assert got == how, check["note"]


def test_docs_table_lists_the_pairs():
    text = (ROOT / "docs" / "gpu.md").read_text()
    section = text.split("### Supported driver / image pairs", 1)[1].split("\n## ", 1)[0]
    assert "requirements-cuda.txt" in section and "torch 2.10.0" in section
    assert "525.60.13" in section and "580.65.06" in section
