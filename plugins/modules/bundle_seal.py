#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_seal
short_description: Write and sign an offline bundle's manifest (every file with its size and SHA-256)
version_added: 0.2.0
description:
  - Runs where the bundle is built (the controller, for C(playbooks/bundle.yml)), never on a fleet host.
  - Lists every file under O(path) with its size and SHA-256, with O(contents) (what the bundle carries and the
    versions), in C(manifest.json) (canonical JSON), and signs the SHA-256 of its exact bytes into C(manifest.sig)
    with O(private_key), in the key mode the collection signs models with (OpenSSF model_signing, EC key; the keys
    C(scripts/model-sign keygen) makes). Each file is written atomically, the manifest first; what was written is
    verified with the key's public half before the module returns.
  - A symbolic link, device, socket or FIFO anywhere under O(path) is refused, naming it; nothing is written then.
  - A bundle whose files and contents did not change, and whose signature verifies with this key, keeps its
    manifest and signature (and its id and creation time).
  - M(autoglm.fleet.bundle_verify) checks the bundle on the site before any host changes.
  - Why a module - no maintained module signs a directory's file list with an operator key; the manifest format
    is this collection's.
author: autoglm.fleet contributors (@autoglm)
extends_documentation_fragment:
  - autoglm.fleet.attributes
attributes:
  check_mode:
    support: full
    details:
      - Hashes the files and reports whether the manifest would change (and the diff); writes and signs nothing.
  diff_mode:
    support: full
    details:
      - The manifest before and after (the previous one only when its signature verifies with this key).
  idempotent:
    support: full
requirements:
  - model-signing and pyopenssl (the controller's venv has them)
options:
  path:
    description: The bundle directory; its files are what the manifest lists (but C(manifest.json) and
      C(manifest.sig)).
    type: path
    required: true
  contents:
    description:
      - What the bundle carries and the versions (for example C(apt), C(images), C(wheelhouse), C(model),
        C(target) entries), recorded as is in the manifest.
    type: dict
    required: true
  private_key:
    description: The operator's private key file (PEM, EC P-256, P-384 or P-521), as C(scripts/model-sign keygen)
      makes it. Keep it off the fleet.
    type: path
    required: true
  private_key_passphrase:
    description: The passphrase of an encrypted O(private_key) (from Ansible Vault).
    type: str
  workers:
    description: Files hashed at the same time.
    type: int
    default: 4
seealso:
  - module: autoglm.fleet.bundle_verify
  - module: autoglm.fleet.model_fetch
"""

EXAMPLES = r"""
- name: Seal the bundle built on this machine
  autoglm.fleet.bundle_seal:
    path: /srv/bundles/site-a
    contents:
      target: debian-12
      model: {id: zai-org/AutoGLM-Phone-9B, revision: v1.0}
    private_key: /secure/keys/model-signing.key
    private_key_passphrase: "{{ vault_bundle_key_passphrase }}"
  delegate_to: localhost
  run_once: true
  register: sealed
"""

RETURN = r"""
manifest:
  description: Id, kind, creation time and totals of the bundle's manifest.
  returned: always
  type: dict
  sample: {id: 3f2a9c0d1e2b3c4d5e6f, kind: full, created: "2026-12-05T04:00:00Z",
           totals: {files: 480, bytes: 3700000000}}
manifest_sha256:
  description: SHA-256 of C(manifest.json) (the bytes the signature is over).
  returned: always
  type: str
  sample: 9c1d5b0e2f8a4c3b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c
key_id:
  description: SHA-256 of the signing key's public half (PEM), as model_signing records it; bundle_verify
    reports the same.
  returned: always
  type: str
  sample: 0d4c1a9e8b7f6e5d4c3b2a190807f6e5d4c3b2a1908f7e6d5c4b3a29180706f5
files:
  description: Which files were added, changed and removed against the manifest that was there (all added when
    there was none that verified with this key).
  returned: always
  type: dict
  sample: {added: [images/model-server.tar], changed: [wheelhouse/vllm-0.6.3-py3-none-any.whl], removed: []}
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._bundle_manifest import (
    BundleError,
    changes,
    dump,
    failure,
    seal,
    summary,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "contents": {"type": "dict", "required": True},
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
        out = seal(p["path"], p["contents"], p["private_key"], password, created, p["workers"], module.check_mode)
    except (BundleError, OSError) as exc:
        module.fail_json(msg=failure("bundle %s not sealed" % p["path"], exc))
    result = {"changed": out["changed"], "manifest": summary(out["manifest"]),
              "manifest_sha256": out["manifest_sha256"], "key_id": out["key_id"],
              "files": changes(out["before"], out["manifest"])}
    if module._diff and out["changed"]:
        header = "%s/manifest.json" % p["path"]
        result["diff"] = {"before_header": header, "after_header": header,
                          "before": dump(out["before"]).decode("ascii") if out["before"] else "",
                          "after": dump(out["manifest"]).decode("ascii")}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
