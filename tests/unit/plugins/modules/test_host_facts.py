"""The host_facts module, run as Ansible runs it (a script with an args file), against this machine.

What it reports is compared with this machine's own files, and the PCI count with the shell probe the roles used
before the module (an independent implementation of the same rule).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from support.module_run import run_module as support_run_module

# The roles' shell probe before host_facts (NVIDIA display controllers on the PCI bus).
SHELL_PCI_COUNT = """
count=0
for dev in /sys/bus/pci/devices/*; do
  [ -r "$dev/vendor" ] && [ -r "$dev/class" ] || continue
  read -r vendor < "$dev/vendor"
  read -r class < "$dev/class"
  case "$vendor:$class" in 0x10de:0x03*) count=$((count + 1)) ;; esac
done
echo "$count"
"""


def run_module(tmp_path, args):
    return support_run_module("host_facts", tmp_path, args, check=args.pop("_ansible_check_mode", False))


def read(path):
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


@pytest.mark.parametrize("check_mode", [False, True])
def test_the_facts_are_this_machines(tmp_path, check_mode):
    rc, result = run_module(tmp_path, {"_ansible_check_mode": check_mode})
    assert rc == 0, result
    assert result["changed"] is False and "failed" not in result
    assert result["kernel"] == os.uname().release
    assert result["pci_gpu_count"] == int(subprocess.check_output(["sh", "-c", SHELL_PCI_COUNT], text=True))
    assert len(result["pci_gpus"]) == result["pci_gpu_count"]
    assert result["nvidia_module_version"] == read("/sys/module/nvidia/version")
    assert result["nouveau_loaded"] is os.path.isdir("/sys/module/nouveau")
    assert result["nvidia_device_present"] is os.path.exists("/dev/nvidia0")
    assert result["reboot_required_file"] is os.path.exists("/var/run/reboot-required")
    assert result["kernel_headers_present"] is os.path.exists("/lib/modules/%s/build" % os.uname().release) or (
        os.path.isdir("/usr/src/kernels/%s" % os.uname().release))
    assert result["machine_id"] == read("/etc/machine-id")
    asked = (result["disk"], result["package_manager"], result["packages"], result["executables"])
    assert asked == (None, None, {}, {})
    facts = result["ansible_facts"]["autoglm_host"]
    assert facts == {key: result[key] for key in facts} and len(facts) == 14
    assert result["os"]["id"] == platform.freedesktop_os_release()["ID"]


def test_disk_packages_and_executables(tmp_path):
    (tmp_path / "models").mkdir()
    rc, result = run_module(tmp_path, {
        "disk_path": str(tmp_path / "models" / "org--name" / "r1"),
        "packages": ["bash", "autoglm-no-such-package"],
        "executables": ["sh", "autoglm-no-such-tool", sys.executable, str(tmp_path)],
    })
    assert rc == 0, result
    assert result["disk"]["measured_at"] == str(tmp_path / "models")
    stat = os.statvfs(tmp_path)
    assert abs(result["disk"]["free_bytes"] - stat.f_bavail * stat.f_frsize) < 64 * 1024 * 1024
    assert result["package_manager"] == "apt"  # this machine is Debian
    assert result["packages"] == {"bash": True, "autoglm-no-such-package": False}
    assert result["executables"]["sh"] in ("/usr/bin/sh", "/bin/sh")
    assert result["executables"]["autoglm-no-such-tool"] is None
    assert result["executables"][sys.executable] == sys.executable
    assert result["executables"][str(tmp_path)] is None  # a directory is no executable


def test_a_package_manager_that_is_not_installed_knows_nothing_and_says_so(tmp_path):
    rc, result = run_module(tmp_path, {"packages": ["bash"], "package_manager": "dnf"})
    assert rc == 0, result
    assert result["packages"] == {"bash": False}
    # ansible-core 2.19 returns warnings as structured events when a module runs on its own
    assert "dnf is not on this host" in json.dumps(result["warnings"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"disk_path": "opt/autoglm/models"}, "disk_path must be an absolute path"),
        ({"package_manager": "zypper"}, "value of package_manager must be one of: auto, apt, dnf"),
        ({"gpus": 1}, "Unsupported parameters"),
    ],
)
def test_bad_input_fails_with_a_message(tmp_path, args, message):
    rc, result = run_module(tmp_path, args)
    assert rc == 1
    assert result["failed"] is True
    assert message in result["msg"], result["msg"]
