"""Run one of the collection's modules as Ansible runs it: a Python script given a JSON args file
({"ANSIBLE_MODULE_ARGS": ...}), with the checkout's collection on PYTHONPATH. Returns (exit code, parsed JSON).
The fixture `run_module` of tests/unit/plugins/conftest.py is this, returning the JSON only."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")


def run_module(name, tmp_path, args, check=False, timeout=120):
    """Run plugins/modules/<name>.py with ``args`` (and check mode when asked) in ``tmp_path``."""
    args = dict(args, _ansible_check_mode=check, _ansible_tmpdir=str(tmp_path))
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    proc = subprocess.run([sys.executable, "-m", "ansible_collections.autoglm.fleet.plugins.modules." + name,
                           str(path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout,
                          check=False)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        pytest.fail("%s printed no JSON (rc %d):\n%s\n%s" % (name, proc.returncode, proc.stdout, proc.stderr))
