#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_seal
short_description: Write and sign an offline bundle's manifest, and make update bundles
version_added: 0.2.0
description:
  - Runs where the bundle is built (the controller, for C(playbooks/bundle.yml)), never on a fleet host.
  - Lists every file under O(path) with its size and SHA-256, with O(contents) (what the bundle carries and the
    versions), in C(manifest.json), and signs its exact bytes with O(signing_key) into C(manifest.sig). A
    bundle whose files and contents did not change keeps its manifest and signature (and its id).
  - With O(update), also writes an update bundle to O(update.dest) - only what changed since the bundle whose
    manifest is O(update.base) (the site's current bundle): its manifest lists the whole content the site ends up
    with and marks what the base already carries. A new image ships as a thin archive (the layers it shares with
    the base's image of the same name are left out). The base's manifest must verify with the same key.
  - M(autoglm.fleet.bundle_verify) checks all of it on the site before any host changes.
  - Why a module - no maintained module signs a directory's file list with an operator key and diffs it against
    another; the manifest format is this collection's (C(docs/bundle.md)).
author: autoglm.fleet maintainers (@autoglm)
extends_documentation_fragment:
  - autoglm.fleet.attributes
attributes:
  check_mode:
    support: full
    details:
      - Hashes the files and reports whether the manifest (and the update) would change; writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
requirements:
  - cryptography (the controller's venv has it)
options:
  path:
    description: The full bundle directory.
    type: path
    required: true
  contents:
    description:
      - What the bundle carries (its C(apt), C(images), C(wheelhouse), C(model) and C(target) entries), recorded
        as is in the manifest; C(playbooks/bundle.yml) assembles it.
    type: dict
    required: true
  signing_key:
    description: The operator's private key (PEM, EC or Ed25519; C(scripts/model-sign keygen) makes one).
    type: path
    required: true
  signing_key_password:
    description: The key's password, when it is encrypted.
    type: str
  update:
    description: Also write an update bundle against the site's current bundle.
    type: dict
    suboptions:
      base:
        description: The site's current bundle's C(manifest.json) (its C(manifest.sig) beside it).
        type: path
        required: true
      dest:
        description: Directory of the update bundle (outside O(path)); files not part of the update are removed.
        type: path
        required: true
  workers:
    description: Files hashed at the same time.
    type: int
    default: 4
"""

EXAMPLES = r"""
- name: Sign the bundle's manifest
  autoglm.fleet.bundle_seal:
    path: /srv/bundles/site-a
    contents: "{{ bundle_contents }}"
    signing_key: /secure/keys/bundle.key

- name: Sign it and write the update from the bundle the site runs now
  autoglm.fleet.bundle_seal:
    path: /srv/bundles/site-a
    contents: "{{ bundle_contents }}"
    signing_key: /secure/keys/bundle.key
    update:
      base: /srv/bundles/site-a-current/manifest.json
      dest: /srv/bundles/site-a-update
"""

RETURN = r"""
manifest:
  description: Id, kind, creation time and totals of the full bundle's manifest.
  returned: always
  type: dict
  sample: {id: 3f2a9c0d1e2b3c4d5e6f, kind: full, created: "2026-12-05T04:00:00Z",
           totals: {files: 480, bytes: 3700000000, shipped_files: 480, shipped_bytes: 3700000000}}
update:
  description: Id, base and totals of the update bundle.
  returned: when O(update) is given
  type: dict
  sample: {id: 9a8b7c6d5e4f3a2b1c0d, kind: update, base: {id: 3f2a9c0d1e2b3c4d5e6f, manifest_sha256: "..."},
           totals: {files: 481, bytes: 3800000000, shipped_files: 9, shipped_bytes: 12000000}}
key_id:
  description: SHA-256 of the signing key's public half (DER); the site's bundle_verify reports the same.
  returned: always
  type: str
"""

import datetime
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._bundle_manifest import (
    BundleError,
    key_id,
    load_private_key,
    make_update,
    read_signed,
    seal,
)
from ansible_collections.autoglm.fleet.plugins.module_utils._image_archive import ImageArchiveError


def _summary(manifest):
    return {k: manifest[k] for k in ("id", "kind", "created", "totals", "base")}


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "contents": {"type": "dict", "required": True},
            "signing_key": {"type": "path", "required": True},
            "signing_key_password": {"type": "str", "no_log": True},
            "update": {
                "type": "dict",
                "options": {
                    "base": {"type": "path", "required": True},
                    "dest": {"type": "path", "required": True},
                },
            },
            "workers": {"type": "int", "default": 4},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not os.path.isdir(p["path"]):
        module.fail_json(msg="%s is not a directory: build the bundle's content first (playbooks/bundle.yml)" % p["path"])
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        with open(p["signing_key"], "rb") as f:
            pem = f.read()
    except OSError as exc:
        module.fail_json(msg="cannot read the signing key %s: %s" % (p["signing_key"], exc))
    try:
        password = p["signing_key_password"].encode() if p["signing_key_password"] else None
        key = load_private_key(pem, password)
        manifest, changed = seal(p["path"], p["contents"], key, created, p["workers"], module.check_mode)
        result = {"manifest": _summary(manifest), "key_id": key_id(key.public_key()), "changed": changed}
        if p["update"]:
            base_dir = os.path.dirname(os.path.abspath(p["update"]["base"]))
            if os.path.basename(p["update"]["base"]) != "manifest.json":
                module.fail_json(msg="update.base must be a bundle's manifest.json (with manifest.sig beside it), "
                                     "not %s" % p["update"]["base"])
            base, base_sha = read_signed(base_dir, key.public_key())
            update, update_changed = make_update(p["path"], manifest, base, base_sha, p["update"]["dest"], key,
                                                 created, module.check_mode)
            result["update"] = _summary(update)
            result["changed"] = changed or update_changed
    except (BundleError, ImageArchiveError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="cannot write the bundle: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
