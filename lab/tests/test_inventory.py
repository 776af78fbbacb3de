"""The lab inventory plugin, through the real ansible-inventory (the plugin loader, options, env vars)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The real ansible-inventory: the integration tier (make integration).
pytestmark = pytest.mark.integration


def ansible_inventory(source, **env):
    """The real ansible-inventory --list over ``source`` with the project's ansible.cfg and ``env`` added."""
    return subprocess.run(
        [str(ROOT / ".venv/bin/ansible-inventory"), "-i", str(source), "--list"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **env},
    )


@pytest.fixture
def inventory(tmp_path):
    """``inventory(text, **env)``: ansible-inventory --list over a lab source with ``text`` as its options."""

    def run(text, **env):
        src = tmp_path / "fleet.autoglm_lab.yml"
        src.write_text("plugin: autoglm_lab\n" + text)
        return ansible_inventory(src, **env)

    return run


def plain(value):
    return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value


def hosts(data, group):
    found = list(data.get(group, {}).get("hosts", []))
    for child in data.get(group, {}).get("children", []):
        found += hosts(data, child)
    return found


def test_groups_addresses_and_the_build_host(inventory):
    run = inventory("gpu_hosts: 3\ncanary_hosts: 1\nname_prefix: t\nsubnet: 10.9.8.0/24\n")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert sorted(hosts(data, "gpu_hosts")) == ["t-gpu-1", "t-gpu-2", "t-gpu-3"]
    assert hosts(data, "canary") == ["t-gpu-1"]
    assert hosts(data, "registry") == ["t-registry-1"]
    assert hosts(data, "model_build") == ["t-registry-1"]
    hv = data["_meta"]["hostvars"]
    assert plain(hv["t-registry-1"]["lab_address"]) == "10.9.8.10"
    assert plain(hv["t-gpu-3"]["lab_address"]) == "10.9.8.22"
    assert plain(hv["t-gpu-1"]["ansible_connection"]) == "docker"
    # Pinned: under Mitogen's strategy a discovered interpreter is discovered again on every task.
    assert plain(hv["t-gpu-1"]["ansible_python_interpreter"]) == "/usr/bin/python3"
    assert plain(hv["t-monitoring-1"]["ansible_python_interpreter"]) == "/usr/bin/python3"
    assert plain(hv["t-gpu-1"]["lab_mirror_address"]) == "10.9.8.250"
    assert plain(hv["t-gpu-1"]["lab_mirror_name"]) == "t-mirror"
    assert hosts(data, "monitoring") == ["t-monitoring-1"]
    assert plain(hv["t-monitoring-1"]["lab_address"]) == "10.9.8.5"
    assert "t-monitoring-1" not in hosts(data, "gpu_hosts") + hosts(data, "canary")


def test_the_network_is_internal_only_when_asked(inventory):
    for text, internal in (("", False), ("internal: true\n", True)):
        run = inventory(text)
        assert run.returncode == 0, run.stderr
        hv = json.loads(run.stdout)["_meta"]["hostvars"]
        assert {plain(v["lab_network_internal"]) for v in hv.values()} == {internal}


def test_a_lab_without_monitoring(inventory):
    run = inventory("monitoring_hosts: 0\n")
    assert run.returncode == 0, run.stderr
    assert hosts(json.loads(run.stdout), "monitoring") == []


def test_the_size_comes_from_the_environment(inventory):
    run = inventory("", AUTOGLM_LAB_GPU_HOSTS="6")
    assert run.returncode == 0, run.stderr
    assert len(hosts(json.loads(run.stdout), "gpu_hosts")) == 6


@pytest.mark.parametrize(("env", "count"), [({}, 2), ({"AUTOGLM_LAB_GPU_HOSTS": "6"}, 6)])
def test_the_shipped_lab_inventory_is_sized_by_the_environment(env, count):
    # The file's own gpu_hosts line used to win over AUTOGLM_LAB_GPU_HOSTS, which its comment and lab.yml promise.
    run = ansible_inventory(ROOT / "inventories/lab", **env)
    assert run.returncode == 0, run.stderr
    assert sorted(hosts(json.loads(run.stdout), "gpu_hosts")) == ["lab-gpu-%d" % i for i in range(1, count + 1)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subnet: 10.9.8.300/24\n", "subnet is not a valid network"),
        ("subnet: 10.9.8.0/28\n", "/24 or larger"),
        ("gpu_hosts: 0\n", "gpu_hosts must be 1..200"),
        ("gpu_hosts: 2\ncanary_hosts: 3\n", "canary_hosts must be between 0 and gpu_hosts"),
        ("monitoring_hosts: 2\n", "monitoring_hosts must be 0 or 1"),
    ],
)
def test_bad_sizes_and_subnets_are_refused_with_the_fix(inventory, text, message):
    run = inventory(text)
    assert message in run.stderr
    assert "lab-gpu-1" not in run.stdout  # nothing half-made: no hosts at all
