#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: host_facts
short_description: Gather the host facts the GPU stack and preflight need (PCI GPUs, driver, kernel headers, disk)
version_added: 0.1.0
description:
  - Reads, without changing anything, what the C(preflight), C(nvidia_driver), C(cuda) and C(container_toolkit)
    roles decide on. NVIDIA GPUs on the PCI bus (vendor C(0x10de), display class C(0x03xxxx), so neither the HDMI
    audio function of a card nor an NVSwitch counts), the loaded C(nvidia) kernel module's version, whether
    C(nouveau) is loaded, whether C(/dev/nvidia0) exists, the running kernel and whether its headers are installed
    (C(/lib/modules/<kernel>/build) or C(/usr/src/kernels/<kernel>)), whether C(/var/run/reboot-required) exists,
    the machine id, and the distribution (C(/etc/os-release)).
  - On request, also the free disk space at a path (measured at its nearest existing directory when the path does
    not exist yet), whether the package manager knows some packages, and where some executables are.
  - Sets them as the C(autoglm_host) fact (C(ansible_facts.autoglm_host)) and returns the same values at the top
    level.
  - Standard library only, so it runs with the host's own Python before the C(autoglm.fleet.runtime) venv exists
    (M(autoglm.fleet.gpu_facts) needs that venv, for NVML). C(ansible.builtin.setup) reads none of these files,
    hence this module.
  - A file the host lacks (no PCI bus in a container, no C(/etc/machine-id)) is not an error; it reads as absent.
author: autoglm.fleet maintainers (@autoglm)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: Read-only; check mode gathers the same facts.
  diff_mode:
    support: none
  idempotent:
    description: Running it again on an unchanged host gives the same result and changes nothing.
    support: full
  facts:
    support: full
  platform:
    platforms: posix
options:
  disk_path:
    description:
      - An absolute path whose free disk space to measure (RV(disk)), for example where the model weights go.
      - When it does not exist yet, the space is measured on its nearest existing parent; nothing is created.
    type: path
  packages:
    description:
      - Packages to look up in the package manager's lists (RV(packages)). A package counts as known when it is
        installed or can be installed; with apt, C(name=version) asks for that version.
    type: list
    elements: str
    default: []
  package_manager:
    description:
      - The package manager to ask about O(packages). V(auto) takes apt when C(apt-cache) is on the host, else dnf.
      - With V(auto) and neither on the host, every package reads as unknown (and RV(package_manager) is V(null)).
    type: str
    choices: [auto, apt, dnf]
    default: auto
  executables:
    description:
      - Executables to look for (RV(executables)). A name is looked up on C(PATH), then in C(/usr/local/sbin),
        C(/usr/sbin) and C(/sbin); an absolute path is checked for being an executable file.
    type: list
    elements: str
    default: []
notes:
  - Inside a container the probes see the container's view of C(/sys), C(/proc) and C(/dev).
"""

EXAMPLES = r"""
- name: Probe the host for the driver role
  autoglm.fleet.host_facts:
    packages: [linux-headers-amd64]
  register: _probe

- name: Say whether a GPU is on the bus and a driver is loaded
  ansible.builtin.debug:
    msg: >-
      {{ _probe.pci_gpu_count }} NVIDIA GPU(s) on the PCI bus, driver module
      {{ _probe.nvidia_module_version | default('not loaded', true) }},
      headers installable: {{ _probe.packages['linux-headers-amd64'] }}

- name: Measure the free disk where the weights will go (nothing is created)
  autoglm.fleet.host_facts:
    disk_path: /opt/autoglm/models

- name: Fail when less than 100 GiB are free there
  ansible.builtin.assert:
    that: ansible_facts.autoglm_host.disk.free_bytes >= 100 * 1024 ** 3
    fail_msg: "only {{ (ansible_facts.autoglm_host.disk.free_bytes / 1024 ** 3) | round(1) }} GiB free"

- name: Find Docker's daemon and the NVIDIA container runtime
  autoglm.fleet.host_facts:
    executables: [dockerd, /usr/bin/nvidia-container-runtime]
  register: _tools
"""

RETURN = r"""
ansible_facts:
  description: The facts set by this module.
  returned: always
  type: dict
  contains:
    autoglm_host:
      description: The same keys as the top-level return values below.
      returned: always
      type: dict
      sample: {"kernel": "6.1.0-18-amd64", "kernel_headers_present": true, "pci_gpu_count": 0, "pci_gpus": [],
               "nvidia_module_version": null, "nouveau_loaded": false, "nvidia_device_present": false,
               "reboot_required_file": false, "machine_id": "4c4c4544003957108052b4c04f384833", "disk": null,
               "package_manager": null, "packages": {}, "executables": {},
               "os": {"id": "debian", "name": "Debian", "version": "12.15"}}
kernel:
  description: The running kernel's release (C(uname -r)); V(null) when C(/proc) does not say.
  returned: always
  type: str
  sample: 6.1.0-18-amd64
kernel_headers_present:
  description: Whether the running kernel's headers are installed (what DKMS needs to build the driver's module).
  returned: always
  type: bool
  sample: true
pci_gpu_count:
  description: How many NVIDIA GPUs are on the PCI bus (whether or not a driver is loaded).
  returned: always
  type: int
  sample: 8
pci_gpus:
  description: The PCI addresses of those GPUs, sorted.
  returned: always
  type: list
  elements: str
  sample: ["0000:07:00.0", "0000:0f:00.0"]
nvidia_module_version:
  description: The version of the loaded C(nvidia) kernel module; V(null) when none is loaded.
  returned: always
  type: str
  sample: "535.183.01"
nouveau_loaded:
  description: Whether the C(nouveau) kernel module is loaded (it holds the GPUs against the NVIDIA driver).
  returned: always
  type: bool
  sample: false
nvidia_device_present:
  description: Whether C(/dev/nvidia0) exists, that is the driver is loaded and has a GPU to hand out.
  returned: always
  type: bool
  sample: true
reboot_required_file:
  description: Whether C(/var/run/reboot-required) exists (Debian and Ubuntu packages ask for a reboot with it).
  returned: always
  type: bool
  sample: false
machine_id:
  description: The content of C(/etc/machine-id); V(null) when it is missing.
  returned: always
  type: str
  sample: 4c4c4544003957108052b4c04f384833
disk:
  description: The free disk at O(disk_path); V(null) when O(disk_path) is not given.
  returned: always
  type: dict
  contains:
    path:
      description: O(disk_path), as given.
      type: str
      sample: /opt/autoglm/models
    measured_at:
      description: The directory measured, O(disk_path) or its nearest existing parent.
      type: str
      sample: /opt
    free_bytes:
      description: Bytes available to unprivileged users there; V(null) when it cannot be measured.
      type: int
      sample: 107374182400
package_manager:
  description: The package manager asked about O(packages), V(apt) or V(dnf); V(null) when none was asked.
  returned: always
  type: str
  sample: apt
packages:
  description: For each of O(packages), whether the package manager knows it.
  returned: always
  type: dict
  sample: {"linux-headers-6.1.0-18-amd64": true}
executables:
  description: For each of O(executables), its path, or V(null) when there is no such executable.
  returned: always
  type: dict
  sample: {"dockerd": "/usr/bin/dockerd", "/usr/bin/nvidia-container-runtime": null}
os:
  description:
    - The distribution, from C(/etc/os-release) - C(id) its C(ID), C(name) its C(NAME) without a C( GNU/Linux)
      suffix, C(version) its C(VERSION_ID) - with Debian's point release from C(/etc/debian_version) when that is
      numeric.
    - A value the host does not give is V(null).
  returned: always
  type: dict
  sample: {"id": "debian", "name": "Debian", "version": "12.15"}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._host_probe import HostProbeError, probe


def main():
    module = AnsibleModule(
        argument_spec={
            "disk_path": {"type": "path"},
            "packages": {"type": "list", "elements": "str", "default": []},
            "package_manager": {"type": "str", "choices": ["auto", "apt", "dnf"], "default": "auto"},
            "executables": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["disk_path"] is not None and not params["disk_path"].startswith("/"):
        module.fail_json(msg="disk_path must be an absolute path (it is %r)" % params["disk_path"])

    def run(argv):
        tool = module.get_bin_path(argv[0])
        if tool is None:
            module.warn("%s is not on this host: the packages it was to look up read as unknown" % argv[0])
            return 127
        rc, _out, _err = module.run_command([tool, *argv[1:]], environ_update={"LC_ALL": "C"})
        return rc

    try:
        facts = probe(
            root="/",
            disk_path=params["disk_path"],
            packages=params["packages"],
            package_manager=params["package_manager"],
            executables=params["executables"],
            path_env=os.environ.get("PATH", ""),
            run=run,
        )
    except HostProbeError as exc:
        module.fail_json(msg=str(exc))
    if params["packages"] and facts["package_manager"] is None:
        module.warn("neither apt-cache nor dnf is on this host: every package in packages reads as unknown")
    result = dict(facts)
    result["ansible_facts"] = {"autoglm_host": facts}
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
