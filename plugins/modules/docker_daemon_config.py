#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_daemon_config
short_description: Merge settings into Docker's daemon.json, validated, backed up and written atomically
version_added: 0.1.0
description:
  - Manages the keys this play owns in Docker's C(daemon.json) and leaves every other key exactly as it was.
  - O(settings) is merged into the existing file. Objects merge recursively and the given keys win; lists and
    scalars replace the old value. Keys that are not given keep their value and their place; new keys are
    appended.
  - The result is compared with the parsed existing file. If they are equal nothing is written and
    C(changed) is false, so a user's formatting survives. When something changes, the file is written as
    JSON with a two-space indent, keys in their order.
  - A missing file is created (with its parent directory) only when the result has at least one key. An empty
    file counts as C({}). A malformed file (invalid JSON, or JSON that is not an object) fails with a message
    naming the file and the line and column of the parse error; nothing is written.
  - The new content goes to a temporary file in the same directory, which is fsynced, validated, and then moved
    over the old file with Ansible's C(atomic_move), which keeps the old file's mode, owner, group and SELinux
    context. A validation failure removes the temporary file and leaves the old file untouched. When O(path) is a
    symlink, the file it points to is replaced and the link is kept.
  - O(mode), O(owner), O(group) and the SELinux options are the usual file arguments (symbolic modes such as
    C(u=rw,go=r) work). A new file gets mode C(0644) unless O(mode) is set; an existing file keeps its mode, owner,
    group and context unless they are set. When they are set, they are applied whether or not the content changed.
  - Validation uses C(dockerd --validate --config-file) when the installed C(dockerd) supports it (Docker 23
    and later). Otherwise a structural check in Python verifies the type and shape of the C(daemon.json) keys
    it knows (for example C(registry-mirrors) are http(s) URLs, C(log-opts) values are strings, C(data-root)
    is absolute, C(default-runtime) names a built-in or configured runtime, C(max-concurrent-downloads) is a
    positive integer, C(default-address-pools) are C({base, size}) objects). Keys it does not know pass through,
    because Docker adds keys in new releases.
  - Three things a C(daemon.json) must not do without an explicit opt-in fail the task, whether they come from
    O(settings) or were already in the file, all reported at once - a non-empty C(insecure-registries) (plain
    HTTP pulls) unless O(allow_insecure_registries=true); a C(tcp://) entry in C(hosts) while C(tlsverify) is not
    C(true) (Docker's API without client authentication, root on the host for anyone who reaches it) unless
    O(allow_insecure_tcp_hosts=true); a C(http://) entry in C(registry-mirrors) (image layers over plain HTTP)
    unless O(allow_insecure_registry_mirrors=true).
  - Why a module and not M(ansible.builtin.copy) or M(ansible.builtin.template) - those own the whole file and
    would drop keys written by other tools (for example C(nvidia-ctk runtime configure)), and no maintained
    module merges into C(daemon.json).
author:
  - autoglm.fleet contributors (@autoglm)
extends_documentation_fragment:
  - ansible.builtin.files
  - autoglm.fleet.attributes
  - autoglm.fleet.attributes.files
attributes:
  check_mode:
    support: full
    details:
      - Computes the result, the diff and the validation (in a temporary file outside the target directory)
        and writes nothing.
  diff_mode:
    support: full
    details:
      - Before and after are the pretty-printed JSON; both headers are O(path).
  idempotent:
    support: full
  safe_file_operations:
    support: full
options:
  path:
    description:
      - The daemon.json file to manage.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description:
      - daemon.json keys to merge into the file, with their values as Docker expects them (for example
        C(log-opts) values are strings such as C("3")).
      - A key may not also be named in O(remove).
    type: dict
    default: {}
  remove:
    description:
      - Keys to remove from the file. A key that is not there is ignored.
      - Nested keys are written as a path separated by C(/), for example C(runtimes/nvidia) removes only the
        C(nvidia) runtime and C(log-opts/max-file) only that option. Inside a key, write C(~1) for a C(/) and
        C(~0) for a C(~) (JSON pointer escaping).
      - A path through a value that is not an object (for example C(registry-mirrors/x)) fails.
      - Removal happens before O(settings) is merged.
    type: list
    elements: str
    default: []
  backup:
    description:
      - Before replacing an existing file, copy it next to itself as C(<path>.<pid>.<YYYY-MM-DD@HH:MM:SS>~)
        (Ansible's C(backup_local), as M(ansible.builtin.copy) does) and return the copy's path in RV(backup_file).
    type: bool
    default: true
  validate:
    description:
      - Validate the new content before it replaces the old file, with C(dockerd --validate) where supported,
        else the structural check.
    type: bool
    default: true
  allow_insecure_registries:
    description:
      - Accept C(insecure-registries) in the resulting file. Without it, any non-empty C(insecure-registries)
        fails the task, whether it comes from O(settings) or was already in the file.
    type: bool
    default: false
  allow_insecure_tcp_hosts:
    description:
      - Accept a C(tcp://) listener in C(hosts) without C(tlsverify=true). Without it such a listener fails the
        task, whether it comes from O(settings) or was already in the file; with C(tlsverify), C(tlscacert),
        C(tlscert) and C(tlskey) the API requires client certificates and needs no opt-in.
    type: bool
    default: false
  allow_insecure_registry_mirrors:
    description:
      - Accept plain C(http://) URLs in C(registry-mirrors). Without it they fail the task, whether they come
        from O(settings) or were already in the file.
    type: bool
    default: false
  dockerd_path:
    description:
      - The C(dockerd) binary whose C(--validate) is used.
      - By default C(dockerd) is looked up in E(PATH), C(/usr/bin) and C(/usr/sbin). When it is missing or has no
        C(--validate), the structural check is used.
    type: path
notes:
  - Restart Docker only when C(changed) is true, for example through a handler.
seealso:
  - name: Docker daemon configuration file
    description: The keys daemon.json accepts.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: Configure Docker for the GPU fleet
  autoglm.fleet.docker_daemon_config:
    settings:
      log-driver: json-file
      log-opts:
        max-size: 100m
        max-file: "3"
      live-restore: true
      max-concurrent-downloads: 6
      registry-mirrors:
        - https://mirror.example.com
      runtimes:
        nvidia:
          path: /usr/bin/nvidia-container-runtime
          runtimeArgs: []
      default-runtime: nvidia
      features:
        buildkit: true
  become: true
  notify: Restart docker

- name: Drop the nvidia runtime but keep every other runtime
  autoglm.fleet.docker_daemon_config:
    settings:
      default-runtime: runc
    remove:
      - runtimes/nvidia
  become: true

- name: Write a lab config to another file, allowing a plain-HTTP lab registry
  autoglm.fleet.docker_daemon_config:
    path: /tmp/lab-daemon.json
    settings:
      insecure-registries:
        - registry.lab:5000
    allow_insecure_registries: true
    backup: false
    mode: '0600'
"""

RETURN = r"""
config:
  description: The resulting daemon.json content.
  returned: success
  type: dict
  sample: {"dns": ["10.0.0.2"], "log-driver": "json-file", "log-opts": {"max-size": "100m", "max-file": "3"}}
previous:
  description: The content before the task (C({}) for a missing or empty file).
  returned: success
  type: dict
  sample: {"dns": ["10.0.0.2"]}
changed_keys:
  description: Top-level keys whose values were changed, added or removed (empty when nothing changed).
  returned: success
  type: list
  elements: str
  sample: ["log-driver", "log-opts"]
backup_file:
  description: Path of the copy of the previous file.
  returned: when O(backup=true) and an existing file was replaced
  type: str
  sample: /etc/docker/daemon.json.4242.2026-11-23@12:00:00~
validated_with:
  description:
    - C(dockerd) when C(dockerd --validate) checked the result, C(structural) when the built-in check did.
    - null when nothing needed writing or O(validate=false).
  returned: success
  type: str
  sample: structural
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._daemon_config import DaemonConfigError, apply
from ansible_collections.autoglm.fleet.plugins.module_utils._daemon_schema import select_validator


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "settings": {"type": "dict", "default": {}},
            "remove": {"type": "list", "elements": "str", "default": []},
            "backup": {"type": "bool", "default": True},
            "validate": {"type": "bool", "default": True},
            "allow_insecure_registries": {"type": "bool", "default": False},
            "allow_insecure_tcp_hosts": {"type": "bool", "default": False},
            "allow_insecure_registry_mirrors": {"type": "bool", "default": False},
            "dockerd_path": {"type": "path"},
        },
        add_file_common_args=True,
        supports_check_mode=True,
    )
    params = module.params

    def run(argv):
        return module.run_command(argv)

    validator = None
    if params["validate"]:
        dockerd = params["dockerd_path"] or module.get_bin_path("dockerd", opt_dirs=["/usr/bin", "/usr/sbin"])
        if params["dockerd_path"] and not os.access(params["dockerd_path"], os.X_OK):
            module.fail_json(
                msg="dockerd_path %s is not an executable file; point it at dockerd or leave it unset."
                % params["dockerd_path"]
            )
        validator = select_validator(dockerd, run)

    try:
        result = apply(
            module,
            params["path"],
            settings=params["settings"],
            remove=params["remove"],
            backup=params["backup"],
            validate=params["validate"],
            allow_insecure_registries=params["allow_insecure_registries"],
            allow_insecure_tcp_hosts=params["allow_insecure_tcp_hosts"],
            allow_insecure_registry_mirrors=params["allow_insecure_registry_mirrors"],
            validator=validator,
        )
    except DaemonConfigError as err:
        module.fail_json(msg=str(err))
    except OSError as err:
        module.fail_json(
            msg="Cannot write %s: %s. Run the task with become, or point 'path' at a writable location."
            % (params["path"], err.strerror or err)
        )

    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
