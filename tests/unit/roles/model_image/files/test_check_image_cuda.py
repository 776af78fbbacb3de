"""roles/model_image/files/check_image_cuda.py: the comparison, table-driven, and the program run as a script (the
role runs it in the image as `python -c <program> LABEL`)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[5] / "roles" / "model_image" / "files" / "check_image_cuda.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("check_image_cuda", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load_script()


@pytest.mark.parametrize(
    ("label", "torch_cuda", "ok"),
    [
        ("12.8", "12.8", True),
        ("12.8.0", "12.8", True),
        ("none", None, True),
        ("NONE", None, True),
        ("12.8", "13.0", False),
        ("13.0", "12.8", False),
        ("12.8", None, False),  # labelled CUDA, a CPU torch inside
        ("none", "12.8", False),  # labelled CPU, a CUDA torch inside: model_serve would refuse it on GPU hosts
        ("", "12.8", False),
        (None, None, False),
        ("12", "12.0", True),
        ("cuda12.8", "12.8", False),
    ],
)
def test_compare(label, torch_cuda, ok):
    result = check.compare(label, torch_cuda, "2.10.0")
    assert result["ok"] is ok
    assert result["label"] == label and result["torch_cuda"] == torch_cuda


def test_messages_name_the_numbers_and_the_fix():
    bad = check.compare("12.8", "13.0", "2.13.0+cu130")["message"]
    assert bad.startswith("the image is labelled ai.autoglm.cuda.version=12.8 but its torch 2.13.0+cu130 is built "
                          "for CUDA 13.0")
    assert "do not set CUDA_VERSION in model_image_build_args" in bad
    cpu = check.compare("12.8", None, "2.13.0+cpu")["message"]
    assert "its torch 2.13.0+cpu is a CPU build" in cpu
    missing = check.compare("", "12.8", "2.10.0")["message"]
    assert missing.startswith("the image has no ai.autoglm.cuda.version label")


def test_main_prints_one_json_line_and_exits_1_without_torch(tmp_path):
    # this interpreter's torch (if any) must not answer: run the script with an empty path and -S
    done = subprocess.run([sys.executable, "-S", "-I", str(SCRIPT), "12.8"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 1
    verdict = json.loads(done.stdout)
    assert verdict["ok"] is False and verdict["message"].startswith("torch cannot be imported in the image")
    usage = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "usage: check_image_cuda.py LABEL" in usage.stderr


@pytest.mark.parametrize(("label", "rc"), [("12.8", 0), ("13.0", 1), ("none", 1)])
def test_run_as_the_role_runs_it(tmp_path, label, rc):
    """`python -c <program> LABEL` against a stand-in torch package reporting CUDA 12.8."""
    torch_dir = tmp_path / "torch"
    torch_dir.mkdir()
    (torch_dir / "__init__.py").write_text("from . import version\n__version__ = '2.10.0+cu128'\n")
    (torch_dir / "version.py").write_text("cuda = '12.8'\n")
    done = subprocess.run([sys.executable, "-c", SCRIPT.read_text(), label], capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path)}, timeout=60, check=False)
    assert done.returncode == rc, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["ok"] is (rc == 0)
    assert (verdict["torch_version"], verdict["torch_cuda"], verdict["label"]) == ("2.10.0+cu128", "12.8", label)
