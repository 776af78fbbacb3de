"""Make `ansible_collections.autoglm.fleet` importable for the tests, from a plain checkout.

`make setup` links the checkout as .cache/collections/ansible_collections/autoglm/fleet; this does
the same when pytest runs on its own, then puts .cache/collections first on sys.path.
The fixture `ansible_playbook` runs a real ansible-playbook against this checkout's collection.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "autoglm", "fleet")

if not os.path.lexists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(os.path.join("..", "..", "..", ".."), LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
# tests/support (helpers the test files share) is importable as `support`.
TESTS_DIR = os.path.join(ROOT, "tests")
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


@pytest.fixture
def ansible_playbook(tmp_path):
    """Return run(playbook, *args, config="", timeout=300): ansible-playbook from this venv, with an
    ansible.cfg naming this checkout's collections (plus the [defaults] lines in ``config``), from ROOT."""

    def run(playbook, *args, config="", timeout=300):
        cfg = tmp_path / "ansible.cfg"
        cfg.write_text("[defaults]\ncollections_path = %s\n%s" % (COLLECTIONS, config))
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(cfg),
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        )
        exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        return subprocess.run([exe, *args, str(playbook)], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=timeout, check=False)

    return run
