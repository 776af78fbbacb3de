"""containers/vllm/entrypoint.sh: the key goes from the mounted file into VLLM_API_KEY, never onto argv.

The script runs for real under /bin/sh; `vllm` is a stand-in on PATH that prints its argv and whether
VLLM_API_KEY holds the key (vLLM itself needs a GPU and several GB).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ENTRYPOINT = Path(__file__).resolve().parents[3] / "containers" / "vllm" / "entrypoint.sh"
STUB = """#!/bin/sh
python3 -c 'import json, os, sys; print(json.dumps({"argv": sys.argv[1:], "key": os.environ.get("VLLM_API_KEY")}))' "$@"
"""


def run(tmp_path, *args, key_file=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "vllm").write_text(STUB)
    (bin_dir / "vllm").chmod(0o755)
    env = {"PATH": "%s:%s" % (bin_dir, os.environ["PATH"])}
    if key_file is not None:
        env["AUTOGLM_API_KEY_FILE"] = str(key_file)
    return subprocess.run(["/bin/sh", str(ENTRYPOINT), *args], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


def test_key_from_file_into_the_environment(tmp_path):
    key = tmp_path / "api-key"
    key.write_text("s3cret-key\n")
    done = run(tmp_path, "/models", "--port", "8000", key_file=key)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {"argv": ["serve", "/models", "--port", "8000"], "key": "s3cret-key"}


def test_refusals(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    assert "is empty" in run(tmp_path, "/models", key_file=empty).stderr
    missing = run(tmp_path, "/models", key_file=tmp_path / "nope")
    assert missing.returncode == 2 and "cannot read the API key file" in missing.stderr
    on_argv = run(tmp_path, "/models", "--api-key", "x")
    assert on_argv.returncode == 2 and "refusing --api-key on the command line" in on_argv.stderr
    assert on_argv.stdout == ""  # vllm never started


def test_no_key_file_no_key(tmp_path):
    done = run(tmp_path, "/models", "--host", "127.0.0.1")
    assert done.returncode == 0 and json.loads(done.stdout)["key"] is None
