# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: autoglm_lab
short_description: The local lab fleet of autoglm.fleet, sized by a variable
description:
  - Describes the lab fleet that C(lab/playbooks/lab.yml) runs as containers on the controller, with one or more
    registry hosts and a number of GPU-group hosts (no GPU, CPU mode), the first of which form the C(canary) group.
    The first registry host is also the C(model_build) host, which builds and publishes the model server image.
  - Sets C(lab_mirror_name) and C(lab_mirror_address) for the lab's model mirror (an nginx container at .250).
  - Every host is reached with the C(docker) connection (C(community.docker.docker), the C(docker) command line,
    which costs the controller about a third of the CPU per task of C(community.docker.docker_api)), by its container
    name, and gets a fixed address on the lab's private Docker network. The short name is the one Mitogen's strategy
    recognises (it then keeps one Python running in each host).
  - Every host's C(ansible_python_interpreter) is C(/usr/bin/python3), the Python of the lab's Debian 12 image. With
    Ansible's interpreter discovery, Mitogen's strategy keeps no discovered interpreter and discovers again on every
    task, starting a C(docker exec) per candidate Python (about 0.4 s a task instead of 0.15 s).
  - The source file must end in C(autoglm_lab.yml) or C(autoglm_lab.yaml).
author: autoglm.fleet maintainers (@autoglm)
options:
  plugin:
    description: Marks the file as this plugin's.
    type: str
    required: true
    choices: [autoglm_lab]
  gpu_hosts:
    description:
      - How many hosts the C(gpu_hosts) group has.
      - Set in the inventory file, it wins over E(AUTOGLM_LAB_GPU_HOSTS); leave it out to size the lab from there.
    type: int
    default: 2
    env:
      - name: AUTOGLM_LAB_GPU_HOSTS
  registry_hosts:
    description: How many hosts the C(registry) group has.
    type: int
    default: 1
  canary_hosts:
    description: How many of the GPU hosts are also in C(canary), the group that takes a new version first.
    type: int
    default: 1
  monitoring_hosts:
    description: How many hosts the C(monitoring) group has (0 or 1; Prometheus with the alert rules, at .5).
    type: int
    default: 1
  name_prefix:
    description: Prefix of host and container names (C(lab-registry-1), C(lab-gpu-1), ...).
    type: str
    default: lab
  network_name:
    description: The Docker network the lab hosts share.
    type: str
    default: autoglm-lab
  subnet:
    description:
      - IPv4 subnet of the lab network, a /24. The monitoring host gets .5, registry hosts addresses from .10, GPU
        hosts from .20.
      - Change it if it collides with a network the controller already uses.
    type: str
    default: 172.30.99.0/24
    env:
      - name: AUTOGLM_LAB_SUBNET
  internal:
    description:
      - Make the lab network a Docker C(--internal) network - no route out, no outside DNS - as an air-gapped site
        has. The controller still reaches the hosts (the docker connection, and the bridge on this machine).
      - The hosts then need everything from an offline bundle (site.yml C(-e fleet_bundle=DIR), docs/bundle.md);
        C(lab/scripts/offline.sh) counts the packets that tried to leave.
    type: bool
    default: false
"""

EXAMPLES = r"""
# inventories/lab/fleet.autoglm_lab.yml: two GPU hosts (the default), or six for one run with
#   AUTOGLM_LAB_GPU_HOSTS=6 ansible-playbook lab/playbooks/lab.yml
plugin: autoglm_lab

# A lab of three GPU hosts whatever the environment says (the file's option comes before the variable):
#   plugin: autoglm_lab
#   gpu_hosts: 3
"""

import ipaddress

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

MONITORING_OFFSET = 5
REGISTRY_OFFSET = 10
GPU_OFFSET = 20
MIRROR_OFFSET = 250
# The Python of the lab image (lab/images/debian-base: Debian 12), set so that nothing discovers it per task.
LAB_PYTHON = "/usr/bin/python3"


class InventoryModule(BaseInventoryPlugin):
    NAME = "autoglm_lab"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("autoglm_lab.yml", "autoglm_lab.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        gpu = self.get_option("gpu_hosts")
        registry = self.get_option("registry_hosts")
        canary = self.get_option("canary_hosts")
        monitoring = self.get_option("monitoring_hosts")
        prefix = self.get_option("name_prefix")
        try:
            net = ipaddress.ip_network(self.get_option("subnet"))
        except ValueError as exc:
            raise AnsibleParserError("autoglm_lab: subnet is not a valid network: %s" % exc) from exc
        if net.version != 4 or net.prefixlen > 24:
            raise AnsibleParserError("autoglm_lab: subnet must be an IPv4 network of /24 or larger")
        if not 1 <= gpu <= 200 or not 1 <= registry <= 10:
            raise AnsibleParserError(
                "autoglm_lab: gpu_hosts must be 1..200 and registry_hosts 1..10 "
                "(set them in %s or with AUTOGLM_LAB_GPU_HOSTS)" % path
            )
        if monitoring not in (0, 1):
            raise AnsibleParserError("autoglm_lab: monitoring_hosts must be 0 or 1 (it is %s)" % monitoring)
        if not 0 <= canary <= gpu:
            raise AnsibleParserError("autoglm_lab: canary_hosts must be between 0 and gpu_hosts (%d)" % gpu)

        for group in ("lab", "registry", "gpu_hosts", "canary", "model_build", "monitoring"):
            self.inventory.add_group(group)
        self.inventory.add_child("all", "lab")
        self.inventory.add_child("lab", "registry")
        self.inventory.add_child("lab", "gpu_hosts")
        self.inventory.add_child("gpu_hosts", "canary")
        self.inventory.add_child("lab", "model_build")
        self.inventory.add_child("lab", "monitoring")
        self.inventory.set_variable("lab", "lab_network_name", self.get_option("network_name"))
        self.inventory.set_variable("lab", "lab_network_subnet", str(net))
        self.inventory.set_variable("lab", "lab_network_internal", bool(self.get_option("internal")))
        self.inventory.set_variable("lab", "lab_network_gateway", str(net.network_address + 1))
        self.inventory.set_variable("lab", "lab_mirror_name", "%s-mirror" % prefix)
        self.inventory.set_variable("lab", "lab_mirror_address", str(net.network_address + MIRROR_OFFSET))

        hosts = [("registry", "%s-registry-%d" % (prefix, i), REGISTRY_OFFSET + i - 1) for i in range(1, registry + 1)]
        hosts += [("gpu_hosts", "%s-gpu-%d" % (prefix, i), GPU_OFFSET + i - 1) for i in range(1, gpu + 1)]
        hosts += [("monitoring", "%s-monitoring-%d" % (prefix, i), MONITORING_OFFSET + i - 1)
                  for i in range(1, monitoring + 1)]
        for index, (group, name, offset) in enumerate(hosts):
            target = "canary" if group == "gpu_hosts" and index - registry < canary else group
            self.inventory.add_host(name, group=target)
            self.inventory.set_variable(name, "ansible_connection", "docker")
            self.inventory.set_variable(name, "ansible_host", name)
            self.inventory.set_variable(name, "ansible_python_interpreter", LAB_PYTHON)
            self.inventory.set_variable(name, "lab_address", str(net.network_address + offset))
            if index == 0:
                self.inventory.add_host(name, group="model_build")
