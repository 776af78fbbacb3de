"""containers/model-server/build.sh picks the variant's requirements and stops when the torch wheel's CUDA differs.

The script runs for real (bash, --context-archive, no Docker) in a copy of containers/model-server under a
temporary root, whose wheelhouse holds a stand-in torch wheel (a zip with torch/version.py, which is all the
script reads from it) and the stamp build.sh writes after a download, so nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SERVER = ROOT / "containers" / "model-server"
PYPI = "https://pypi.org/simple"


def _fake_root(tmp_path, wheel_cuda, requirements_name="requirements-cuda.txt"):
    root = tmp_path / "root"
    here = root / "containers" / "model-server"
    here.mkdir(parents=True)
    for name in ("build.sh", "Dockerfile", "pyproject.toml", "requirements.txt", "requirements-cuda.txt"):
        shutil.copy2(SERVER / name, here / name)
    shutil.copytree(SERVER / "src" / "autoglm_server", here / "src" / "autoglm_server",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wheelhouse = root / ".cache" / "model-server" / "wheelhouse-cuda"
    wheelhouse.mkdir(parents=True)
    torch_pin = next(line for line in (here / requirements_name).read_text().splitlines() if line.startswith("torch=="))
    wheel = wheelhouse / ("torch-%s-cp311-cp311-manylinux_2_28_x86_64.whl" % torch_pin.split("==")[1])
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr("torch/version.py", "__version__ = '%s'\ncuda: Optional[str] = '%s'\n"
                     % (torch_pin.split("==")[1], wheel_cuda))
    # the stamp build.sh writes after a complete download: the requirements file, then "cuda <torch index> <pypi>"
    stamp_input = (here / requirements_name).read_bytes() + ("cuda %s %s\n" % (PYPI, PYPI)).encode()
    (wheelhouse / ".stamp").write_text(hashlib.sha256(stamp_input).hexdigest()[:16] + "\n")
    return here


def _build(here, tmp_path, **env):
    archive = tmp_path / "context.tar"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_VERSION", "TORCH_INDEX", "REQUIREMENTS"))}
    run_env.update(VARIANT="cuda", PYTHON=sys.executable, PYPI_INDEX_URL=PYPI, **env)
    done = subprocess.run(["bash", str(here / "build.sh"), "--context-archive", str(archive)], capture_output=True,
                          text=True, env=run_env, timeout=120, check=False)
    return done, archive


def test_cuda_variant_builds_from_requirements_cuda(tmp_path):
    here = _fake_root(tmp_path, "12.8")
    done, archive = _build(here, tmp_path)
    assert done.returncode == 0, done.stderr
    with tarfile.open(archive) as tar:
        shipped = tar.extractfile("./requirements.txt").read().decode()
        names = tar.getnames()
    # the image installs the CUDA set (torch 2.10.0, the -cu12 12.8 wheels), not the CPU one
    assert shipped == (SERVER / "requirements-cuda.txt").read_text()
    assert "torch==2.10.0" in shipped.splitlines()
    assert "./wheelhouse/torch-2.10.0-cp311-cp311-manylinux_2_28_x86_64.whl" in names


@pytest.mark.parametrize(("wheel_cuda", "env"), [("13.0", {}), ("12.6", {}), ("12.8", {"CUDA_VERSION": "13.0"})])
def test_cuda_mismatch_stops_the_build(tmp_path, wheel_cuda, env):
    here = _fake_root(tmp_path, wheel_cuda)
    done, archive = _build(here, tmp_path, **env)
    want = env.get("CUDA_VERSION", "12.8")
    assert done.returncode == 1
    assert ("build.sh: the image must be built for CUDA %s (CUDA_VERSION, or the '# cuda-version:' line of" % want
            ) in done.stderr
    assert "is built for CUDA %s" % wheel_cuda in done.stderr
    assert not archive.exists()


def test_cuda_version_overrides_the_declared_one(tmp_path):
    here = _fake_root(tmp_path, "13.0")
    done, archive = _build(here, tmp_path, CUDA_VERSION="13.0")
    assert done.returncode == 0, done.stderr
    assert archive.is_file()


def test_requirements_without_a_cuda_line_are_refused(tmp_path):
    here = _fake_root(tmp_path, "12.8")
    other = tmp_path / "requirements-other.txt"
    other.write_text("\n".join(line for line in (here / "requirements-cuda.txt").read_text().splitlines()
                               if not line.startswith("# cuda-version:")) + "\n")
    done, _archive = _build(here, tmp_path, REQUIREMENTS=str(other))
    assert done.returncode == 1
    assert "no '# cuda-version: X.Y' line in %s" % other in done.stderr
