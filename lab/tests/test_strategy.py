"""The lab's strategy (lab/plugins/strategy/autoglm_mitogen_linear.py): Mitogen's linear strategy with the collection
directories listed once, in the strategy's process, instead of in every worker that runs a collection's module."""

import importlib.util
import os
import subprocess
from pathlib import Path

import ansible.collections.list
import ansible_mitogen.planner
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "lab" / "plugins" / "strategy" / "autoglm_mitogen_linear.py"


LISTED = (
    b"/srv/collections/ansible_collections/community/docker",
    b"/srv/collections/ansible_collections/autoglm/fleet",
)


@pytest.fixture
def strategy(monkeypatch):
    """The plugin module, loaded as Ansible's plugin loader would, over a known list of collection directories (a
    plain Python process has no collection loader for the real list: the integration test below has the real one)."""
    calls = []

    def listed(*_args, **_kwargs):
        calls.append(1)
        return iter(LISTED)

    monkeypatch.setattr(ansible.collections.list, "list_collection_dirs", listed)
    monkeypatch.setattr(ansible_mitogen.planner, "_load_collections", ansible_mitogen.planner._load_collections)
    spec = importlib.util.spec_from_file_location("autoglm_mitogen_linear", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.calls = calls
    return module


class Invocation:
    def __init__(self):
        self._extra_sys_paths = set()


def test_the_directories_are_listed_once_when_the_strategy_loads(strategy):
    assert tuple(p.decode("utf-8") for p in LISTED) == strategy.COLLECTION_DIRS
    assert strategy.calls == [1]
    assert ansible_mitogen.planner._load_collections is strategy._load_collections


def test_every_worker_gets_the_list_without_walking_the_directories_again(strategy):
    for _worker in range(3):
        invocation = Invocation()
        ansible_mitogen.planner._load_collections(invocation)
        assert invocation._extra_sys_paths == {p.decode("utf-8") for p in LISTED}
    assert strategy.calls == [1]


@pytest.mark.integration
def test_a_collection_module_runs_under_the_strategy(tmp_path):
    """A real ansible-playbook with the strategy, as scripts/lib.sh lab_strategy sets it: a collection's module runs."""
    mitogen = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    (tmp_path / "data.csv").write_text("name,port\nblue,8001\ngreen,8002\n")
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - community.general.read_csv: {path: %s/data.csv, key: name}\n      register: r\n"
        "    - ansible.builtin.debug: {msg: \"{{ r.dict.green.port }}\"}\n" % tmp_path
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_STRATEGY_PLUGINS": "%s:%s" % (PLUGIN.parent, mitogen),
        "ANSIBLE_STRATEGY": "autoglm_mitogen_linear",
    }
    argv = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % (ROOT / ".venv/bin/python"), str(tmp_path / "play.yml")]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "msg: '8002'" in proc.stdout, proc.stdout[-2000:]
