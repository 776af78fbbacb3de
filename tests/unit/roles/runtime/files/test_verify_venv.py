"""roles/runtime/files/verify_venv.py run as the role runs it (`python -c <program> NAME==VERSION ...`), with this
venv's Python and its real installed packages."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

PROGRAM = (Path(__file__).resolve().parents[5] / "roles" / "runtime" / "files" / "verify_venv.py").read_text()
PYTEST = version("pytest")
YAML = version("PyYAML")


def verify(*requirements):
    return subprocess.run([sys.executable, "-c", PROGRAM, *requirements], capture_output=True, text=True,
                          timeout=60, check=False)


def test_every_requirement_at_its_version_passes():
    run = verify("pytest==" + PYTEST, "PyYAML==" + YAML, "pyyaml[libyaml]==" + YAML)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_no_requirement_passes():
    assert verify().returncode == 0


@pytest.mark.parametrize(
    ("requirements", "message"),
    [
        (["pytest==0.0.1"], "pytest: want 0.0.1, have %s" % PYTEST),
        (["autoglm-no-such-package==1.0"], "autoglm-no-such-package: want 1.0, have missing"),
        (["pytest"], "pytest: not pinned as name==version"),
        (["pytest=="], "pytest==: not pinned as name==version"),
        (["pytest==" + PYTEST, "PyYAML==0.1", "autoglm-no-such-package==2"],
         "PyYAML: want 0.1, have %s; autoglm-no-such-package: want 2, have missing" % YAML),
    ],
)
def test_every_mismatch_is_named_in_one_line(requirements, message):
    run = verify(*requirements)
    assert run.returncode == 1
    assert run.stderr.strip() == message
