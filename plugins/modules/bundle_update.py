#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_update
short_description: Make an update bundle - only what changed since the site's current bundle - signed
version_added: 0.2.0
description:
  - Runs where the bundles are built (the controller of C(playbooks/bundle.yml)), after the full bundle is sealed.
  - Verifies the full bundle at O(full) (its signature and every file) and the signed manifest of the site's
    current bundle at O(base) with the public half of O(private_key); then writes to O(dest) only the files the
    site lacks and a signed manifest of kind C(update) that lists every file of the full bundle, marks those the
    base holds, and names the base by its id and the SHA-256 of its manifest.
  - "What ships: a package, an image archive, any file on its own when new or changed; the apt indices, the
    wheelhouse and a model revision ship whole when any of their files changed."
  - A second run with nothing changed rewrites nothing. Files in O(dest) that the update does not ship are removed
    (a directory of updates is this module's own). Hard links from O(full) where the file system allows.
  - Why a module - the update's file table, its signature and its base reference are this collection's format.
author: autoglm.fleet maintainers (@autoglm)
extends_documentation_fragment:
  - autoglm.fleet.attributes
attributes:
  check_mode:
    support: full
    details:
      - Verifies both bundles and reports whether the update would be written; writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
requirements:
  - model-signing and pyopenssl on the machine it runs on (the controller's venv has them)
options:
  full:
    description: The sealed full bundle (C(playbooks/bundle.yml)'s O(autoglm.fleet.bundle#role:main:bundle_dir)).
    type: path
    required: true
  base:
    description:
      - The site's current bundle, or a directory with just its C(manifest.json) and C(manifest.sig) (the operator
        brings those two files out of the site). It must verify with the same key.
    type: path
    required: true
  dest:
    description: The update's directory, outside O(full). Created when missing.
    type: path
    required: true
  private_key:
    description: The operator's private key (PEM, EC) that signs the update; the sites verify with its public half.
    type: path
    required: true
  private_key_passphrase:
    description: The passphrase of an encrypted O(private_key).
    type: str
  workers:
    description: Files hashed at the same time.
    type: int
    default: 4
seealso:
  - module: autoglm.fleet.bundle_seal
  - module: autoglm.fleet.bundle_apply
"""

EXAMPLES = r"""
- name: Make the update from the site's current bundle to the one just built
  autoglm.fleet.bundle_update:
    full: /srv/bundles/site-a
    base: /srv/bundles/site-a-current-manifest
    dest: /srv/bundles/site-a-update-2026-12
    private_key: /secure/bundle.key
  delegate_to: localhost
"""

RETURN = r"""
manifest:
  description: The update's id, kind (V(update)), creation time and totals (every file it lists).
  returned: always
  type: dict
  sample:
    {id: 0a1b2c3d4e5f60718293, kind: update, created: "2026-12-05T04:00:00Z", totals: {files: 182, bytes: 1640000000}}
base:
  description: The bundle the update applies onto.
  returned: always
  type: dict
  sample: {id: 44c5461937cfe72c6813, manifest_sha256: 9c1d5b0e2f8a4c3b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c}
shipped:
  description: Files and bytes the update carries.
  returned: always
  type: dict
  sample: {files: 3, bytes: 1400000000}
full:
  description: Files and bytes of the full bundle it stands for.
  returned: always
  type: dict
  sample: {files: 182, bytes: 1640000000}
manifest_sha256:
  description: SHA-256 of the update's C(manifest.json).
  returned: always
  type: str
  sample: 9c1d5b0e2f8a4c3b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c
key_id:
  description: SHA-256 of the public key (PEM) it verifies with.
  returned: always
  type: str
  sample: 0d4c1a9e8b7f6e5d4c3b2a190807f6e5d4c3b2a1908f7e6d5c4b3a29180706f5
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._bundle_manifest import BundleError, failure, summary
from ansible_collections.autoglm.fleet.plugins.module_utils._bundle_update import make


def main():
    module = AnsibleModule(
        argument_spec={
            "full": {"type": "path", "required": True},
            "base": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "private_key": {"type": "path", "required": True},
            "private_key_passphrase": {"type": "str", "no_log": True},
            "workers": {"type": "int", "default": 4},
        },
        supports_check_mode=True,
    )
    p = module.params
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    password = p["private_key_passphrase"].encode("utf-8") if p["private_key_passphrase"] else None
    try:
        out = make(p["full"], p["base"], p["dest"], p["private_key"], password, created, p["workers"],
                   module.check_mode)
    except (BundleError, OSError) as exc:
        module.fail_json(msg=failure("update %s not made" % p["dest"], exc))
    module.exit_json(changed=out["changed"], manifest=summary(out["manifest"]), base=out["manifest"]["base"],
                     shipped=out["shipped"], full=out["full"], manifest_sha256=out["manifest_sha256"],
                     key_id=out["key_id"])


if __name__ == "__main__":
    main()
