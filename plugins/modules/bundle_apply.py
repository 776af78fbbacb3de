#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_apply
short_description: Apply an update bundle onto the site's current bundle, verified, before any host changes
version_added: 0.2.0
description:
  - Runs on the machine that holds the bundles (the controller; C(site.yml -e fleet_bundle=UPDATE
    -e fleet_bundle_base=CURRENT) runs it first).
  - Verifies the update's signature with O(public_key), that the bundle at O(base) is the one the update was made
    against (the SHA-256 of its signed manifest), that the update holds exactly the files it ships; then assembles
    the new bundle next to O(dest) from the update's files and the base's (hard links where the file system allows),
    verifies it whole - the signature, every file - and only then moves it to O(dest). A refused update names the
    first file that failed and leaves O(dest) as it was.
  - O(dest) is the site's new current bundle, and the base of the next update. An O(dest) that holds this update
    applied already is left as it is; one that holds another bundle is replaced; anything else is refused.
  - Why a module - the update format and its signature are this collection's.
author: autoglm.fleet maintainers (@autoglm)
extends_documentation_fragment:
  - autoglm.fleet.attributes
attributes:
  check_mode:
    support: full
    details:
      - Verifies the update and its base and reports whether O(dest) would change; writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
requirements:
  - model-signing and pyopenssl on the machine it runs on (the controller's venv has them)
options:
  update:
    description: The update bundle (C(playbooks/bundle.yml) with O(autoglm.fleet.bundle#role:main:bundle_update_dir)).
    type: path
    required: true
  base:
    description: The site's current bundle, as verified and used by the last run.
    type: path
    required: true
  dest:
    description: Where the applied bundle goes; another directory than O(update) and O(base).
    type: path
    required: true
  public_key:
    description: The operator's public key file (PEM, EC).
    type: path
    required: true
  workers:
    description: Files hashed at the same time.
    type: int
    default: 4
seealso:
  - module: autoglm.fleet.bundle_update
  - module: autoglm.fleet.bundle_verify
"""

EXAMPLES = r"""
- name: Apply the update onto the site's current bundle
  autoglm.fleet.bundle_apply:
    update: /media/usb/site-a-update-2026-12
    base: /srv/bundles/current
    dest: /srv/bundles/2026-12
    public_key: /etc/autoglm/bundle.pub
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
path:
  description: The applied bundle (O(dest), absolute).
  returned: always
  type: str
  sample: /srv/bundles/2026-12
id:
  description: The update's id.
  returned: always
  type: str
  sample: 0a1b2c3d4e5f60718293
base:
  description: The bundle it was applied onto.
  returned: always
  type: dict
  sample: {id: 44c5461937cfe72c6813, manifest_sha256: 9c1d5b0e2f8a4c3b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c}
created:
  description: When the update was sealed (UTC).
  returned: always
  type: str
  sample: "2026-12-05T04:00:00Z"
manifest_sha256:
  description: SHA-256 of the update's C(manifest.json).
  returned: always
  type: str
  sample: 9c1d5b0e2f8a4c3b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c
key_id:
  description: SHA-256 of the public key (PEM) the signature verified with.
  returned: always
  type: str
  sample: 0d4c1a9e8b7f6e5d4c3b2a190807f6e5d4c3b2a1908f7e6d5c4b3a29180706f5
contents:
  description: What the applied bundle carries and the versions.
  returned: always
  type: dict
  sample: {model: {id: zai-org/AutoGLM-Phone-9B, revision: v1.1}}
totals:
  description: Files and bytes of the applied bundle.
  returned: always
  type: dict
  sample: {files: 182, bytes: 1640000000}
shipped:
  description: Files and bytes the update carried.
  returned: always
  type: dict
  sample: {files: 3, bytes: 1400000000}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._bundle_manifest import BundleError, failure
from ansible_collections.autoglm.fleet.plugins.module_utils._bundle_update import apply


def main():
    module = AnsibleModule(
        argument_spec={
            "update": {"type": "path", "required": True},
            "base": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "public_key": {"type": "path", "required": True},
            "workers": {"type": "int", "default": 4},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        out = apply(p["update"], p["base"], p["dest"], p["public_key"], p["workers"], module.check_mode)
    except (BundleError, OSError) as exc:
        module.fail_json(msg=failure("update %s refused" % p["update"], exc))
    manifest = out["manifest"]
    module.exit_json(changed=out["changed"], path=os.path.abspath(p["dest"]), id=manifest["id"],
                     base=manifest["base"], created=manifest["created"], manifest_sha256=out["manifest_sha256"],
                     key_id=out["key_id"], contents=manifest["contents"], totals=out["totals"],
                     shipped=out["shipped"])


if __name__ == "__main__":
    main()
