"""bench/serve_bench.py starts its servers with the server package on PYTHONPATH, keeping what was there: on the GPU
machine the server's web stack comes from carried wheels on PYTHONPATH (bench/gpu_check.sh)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "serve_bench.py"


def _load():
    spec = importlib.util.spec_from_file_location("serve_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_child_env_keeps_pythonpath():
    bench = _load()
    env = bench.child_env({"PYTHONPATH": "/tmp/site", "HOME": "/root"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(bench.SRC), "/tmp/site"]
    assert env["HOME"] == "/root"
    assert bench.child_env({})["PYTHONPATH"] == str(bench.SRC)
