#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_verify
short_description: Verify an offline bundle - its signature and every file - before anything uses it
version_added: 0.2.0
description:
  - Checks a bundle sealed by M(autoglm.fleet.bundle_seal) on the machine that holds it (the controller; run it
    there before any host changes). Parses nothing of C(manifest.json) before C(manifest.sig) verifies with
    O(public_key) over its exact bytes, in the key mode the collection signs models with (OpenSSF
    model_signing, EC key).
  - Then the tree - nothing but plain files and directories (a symbolic link anywhere is refused, whatever it
    points at), no file the manifest does not list, none missing, every size, then every SHA-256. The first file
    that fails is named in the error; the module changes nothing, so nothing of a refused bundle reaches a host.
  - A signature of a model (C(scripts/model-sign)) is refused as a bundle's signature.
  - Why a module - no maintained module checks a signed file list of a directory tree; the manifest format is
    this collection's.
author: autoglm.fleet contributors (@autoglm)
extends_documentation_fragment:
  - autoglm.fleet.attributes
attributes:
  check_mode:
    support: full
    details:
      - It only reads; check mode verifies exactly as a normal run.
  diff_mode:
    support: none
  idempotent:
    support: full
requirements:
  - model-signing and pyopenssl on the machine it runs on (the controller's venv has them)
options:
  path:
    description: The bundle (a directory with C(manifest.json), C(manifest.sig) and the files they list).
    type: path
    required: true
  public_key:
    description: The operator's public key file (PEM, EC), the C(.pub) of C(scripts/model-sign keygen).
    type: path
    required: true
  workers:
    description: Files hashed at the same time.
    type: int
    default: 4
seealso:
  - module: autoglm.fleet.bundle_seal
"""

EXAMPLES = r"""
- name: Verify the bundle on the controller before any host changes
  autoglm.fleet.bundle_verify:
    path: /media/usb/bundle-2026-12
    public_key: /etc/autoglm/model-signing.pub
  delegate_to: localhost
  run_once: true
  register: bundle
"""

RETURN = r"""
path:
  description: The bundle's absolute path.
  returned: always
  type: str
  sample: /media/usb/bundle-2026-12
id:
  description: The bundle's id (a digest of what it holds).
  returned: always
  type: str
  sample: 3f2a9c0d1e2b3c4d5e6f
kind:
  description: V(full).
  returned: always
  type: str
  sample: full
created:
  description: When the bundle was sealed (UTC).
  returned: always
  type: str
  sample: "2026-12-05T04:00:00Z"
manifest_sha256:
  description: SHA-256 of the bundle's C(manifest.json), the bytes the signature is over.
  returned: always
  type: str
  sample: 9c1d5b0e2f8a4c3b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c
key_id:
  description: SHA-256 of the public key (PEM) the signature verified with, as model_signing records it.
  returned: always
  type: str
  sample: 0d4c1a9e8b7f6e5d4c3b2a190807f6e5d4c3b2a1908f7e6d5c4b3a29180706f5
contents:
  description: What the bundle carries and the versions, as its signed manifest says.
  returned: always
  type: dict
  sample: {target: debian-12, model: {id: zai-org/AutoGLM-Phone-9B, revision: v1.0}}
totals:
  description: Files and bytes the bundle holds (all verified).
  returned: always
  type: dict
  sample: {files: 480, bytes: 3700000000}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._bundle_manifest import BundleError, failure, verify


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "public_key": {"type": "path", "required": True},
            "workers": {"type": "int", "default": 4},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        verified = verify(p["path"], p["public_key"], p["workers"])
    except (BundleError, OSError) as exc:
        module.fail_json(msg=failure("bundle %s refused" % p["path"], exc))
    manifest = verified["manifest"]
    module.exit_json(changed=False, path=os.path.abspath(p["path"]), id=manifest["id"], kind=manifest["kind"],
                     created=manifest["created"], manifest_sha256=verified["manifest_sha256"],
                     key_id=verified["key_id"], contents=manifest["contents"], totals=verified["totals"])


if __name__ == "__main__":
    main()
