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
  - Checks a bundle made by C(playbooks/bundle.yml) on the machine that holds it (the controller; C(site.yml)
    runs it there before any host changes). Reads nothing from the bundle's files before the signature of its
    C(manifest.json) verifies with the operator's public key.
  - Then every file the manifest lists, in path order - present, a plain file (never a symbolic link), its size,
    its SHA-256 - and that nothing else lies in the bundle directory. The first file that fails is named in the
    error; nothing of a refused bundle reaches a host.
  - An update bundle ships only what changed since its base; give the site's current bundle (and any updates
    applied since, oldest first) in O(base). The chain is checked (each update names the manifest before it)
    and the files the update takes from its base are verified where they lie.
  - Returns what the roles need - the controller paths of the wheelhouse, the image archives (with the archives
    a thin image archive stands on), the model, the apt repository's key - and the files the depot serves.
  - Why a module - no maintained module checks a signed file list of a directory tree; the manifest format is
    this collection's (C(docs/bundle.md)), written by M(autoglm.fleet.bundle_seal).
author: autoglm.fleet maintainers (@autoglm)
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
  - cryptography on the machine it runs on (the controller's venv has it)
options:
  path:
    description: The bundle to roll out (a directory with C(manifest.json) and C(manifest.sig)).
    type: path
    required: true
  base:
    description:
      - For an update bundle - the bundles it builds on, oldest first - the site's current full bundle, then the
        updates applied since.
    type: list
    elements: path
    default: []
  public_key:
    description: The operator's public key (PEM text, C(BEGIN PUBLIC KEY)) the bundle must be signed with.
    type: str
  public_key_path:
    description: The same key, as a file on the machine the module runs on.
    type: path
  workers:
    description: Files hashed at the same time.
    type: int
    default: 4
"""

EXAMPLES = r"""
- name: Verify the bundle on the controller before any host changes
  autoglm.fleet.bundle_verify:
    path: /media/usb/bundle-2026-12
    public_key: "{{ fleet_bundle_public_key }}"
  delegate_to: localhost
  run_once: true
  register: bundle

- name: Verify an update against the site's current bundle
  autoglm.fleet.bundle_verify:
    path: /media/usb/update-2026-12-20
    base: [/srv/bundles/bundle-2026-12]
    public_key_path: /etc/autoglm/bundle.pub
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
id:
  description: The bundle's id (a digest of what it holds).
  returned: always
  type: str
  sample: 3f2a9c0d1e2b3c4d5e6f
kind:
  description: V(full) or V(update).
  returned: always
  type: str
  sample: full
created:
  description: When the bundle was made (UTC).
  returned: always
  type: str
  sample: "2026-12-05T04:00:00Z"
manifest_sha256:
  description: SHA-256 of the bundle's C(manifest.json); an update made against this bundle names it.
  returned: always
  type: str
key_id:
  description: SHA-256 of the public key (DER) the signatures verified with.
  returned: always
  type: str
chain:
  description: The bundles verified, oldest first (id, kind, manifest_sha256, path).
  returned: always
  type: list
  elements: dict
contents:
  description: What the bundle carries (apt repository and its package versions, images with their ids, the
    wheelhouse, the model), as its manifest says.
  returned: always
  type: dict
totals:
  description: Files and bytes of the content, and of what this bundle itself ships.
  returned: always
  type: dict
  sample: {files: 480, bytes: 3700000000, shipped_files: 480, shipped_bytes: 3700000000}
paths:
  description: >-
    Controller paths the roles use: C(wheelhouse_dir), C(model) (with C(dir)), C(apt) (with C(key_file)),
    C(images) (each with C(file) and C(load_chain), the archives a thin archive stands on, oldest first) and
    C(depot_files) (the apt repository and model files, each with the C(root) directory that holds it).
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._bundle_manifest import (
    BundleError,
    describe,
    load_public_key,
    verify_chain,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "base": {"type": "list", "elements": "path", "default": []},
            "public_key": {"type": "str"},
            "public_key_path": {"type": "path"},
            "workers": {"type": "int", "default": 4},
        },
        mutually_exclusive=[("public_key", "public_key_path")],
        required_one_of=[("public_key", "public_key_path")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["public_key_path"]:
            try:
                with open(p["public_key_path"], "rb") as f:
                    pem = f.read()
            except OSError as exc:
                raise BundleError("cannot read the public key %s: %s" % (p["public_key_path"], exc)) from exc
        else:
            pem = p["public_key"]
        key = load_public_key(pem)
        verified = verify_chain(list(p["base"]) + [p["path"]], key, p["workers"])
        paths = describe(verified)
    except BundleError as exc:
        module.fail_json(msg="bundle %s refused: %s" % (p["path"], exc))
    except OSError as exc:
        module.fail_json(msg="bundle %s cannot be read: %s" % (p["path"], exc))
    manifest = verified["manifest"]
    module.exit_json(
        changed=False,
        id=manifest["id"],
        kind=manifest["kind"],
        created=manifest["created"],
        base=manifest["base"],
        manifest_sha256=verified["manifest_sha256"],
        key_id=verified["key_id"],
        chain=verified["chain"],
        contents=manifest["contents"],
        totals=verified["totals"],
        paths=paths,
        path=os.path.abspath(p["path"]),
    )


if __name__ == "__main__":
    main()
