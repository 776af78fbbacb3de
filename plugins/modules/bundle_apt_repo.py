#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_apt_repo
short_description: Make a signed flat apt repository holding the full dependency closure of some packages
version_added: 0.2.0
description:
  - Runs on a machine with a route to the target release's mirrors (the controller, for C(playbooks/bundle.yml)),
    never on a fleet host. Needs C(apt-get), C(apt-cache) and C(gpg) there (a Debian or Ubuntu machine) and the
    target release's archive keyring (O(sources[].signed_by)).
  - apt resolves O(packages) with a private root under O(work_dir) (its own sources, lists and an B(empty) dpkg
    status), so the closure is what a host with nothing installed needs, whatever the target hosts already carry.
    The archive's own records (from its signed indices) give every package's SHA-256; the files are downloaded
    into O(archives_dir) (reused by later runs, shared with other apt caches) and each is checked against it.
  - O(dest) becomes a flat repository (C(deb <url> ./)) - C(pool/), C(Packages), C(Packages.gz), C(Release),
    and C(InRelease) and C(Release.gpg) signed by an OpenPGP key made for it and discarded after signing; its
    public half is C(bundle-repo.gpg), for the hosts' C(Signed-By). A closure that did not change leaves O(dest)
    exactly as it is (same files, same key).
  - Why a module - no maintained module resolves a closure for another system's state or writes a signed flat
    repository; M(ansible.builtin.apt) installs on the host it runs on.
author: autoglm.fleet maintainers (@autoglm)
extends_documentation_fragment:
  - autoglm.fleet.attributes
attributes:
  check_mode:
    support: full
    details:
      - Fetches the package lists into O(work_dir) and resolves the closure (what would be downloaded, how many
        bytes are cached); writes nothing in O(dest) or O(archives_dir).
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - An unchanged closure rewrites nothing. A mirror that published new versions since gives a new closure.
requirements:
  - apt-get, apt-cache and gpg on the machine it runs on
options:
  dest:
    description: Directory of the repository; created when missing. Files in its C(pool/) that are not part of
      the closure are removed.
    type: path
    required: true
  packages:
    description:
      - What the hosts install, as apt takes it on the command line (C(name), C(name=version), C(name=535.*)).
    type: list
    elements: str
    required: true
  sources:
    description: The target release's package sources, as deb822 fields.
    type: list
    elements: dict
    required: true
    suboptions:
      uris:
        description: Mirror URLs.
        type: list
        elements: str
        required: true
      suites:
        description: Suites (C(bookworm), C(bookworm-updates), C(bookworm-security)).
        type: list
        elements: str
        required: true
      components:
        description: Components (C(main), C(contrib), C(non-free), C(non-free-firmware)).
        type: list
        elements: str
        required: true
      signed_by:
        description: Keyring on this machine that the suites' Release files must be signed by.
        type: path
        required: true
  codename:
    description: The target release's codename, recorded in the repository's C(Release).
    type: str
    default: bookworm
  architecture:
    description: The hosts' architecture (Debian's name).
    type: str
    default: amd64
  work_dir:
    description: apt's private root (lists, status, configuration); kept between runs so lists are only refreshed.
    type: path
    required: true
  archives_dir:
    description: Where downloaded packages are kept between runs (an apt archive directory; may be shared).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: The Debian 12 packages of the fleet, with their closure, as a signed repository
  autoglm.fleet.bundle_apt_repo:
    dest: /srv/bundles/site-a/apt
    packages: [docker.io, python3-venv, python3-packaging, "nvidia-driver=535.*"]
    sources:
      - uris: [http://deb.debian.org/debian]
        suites: [bookworm, bookworm-updates]
        components: [main, contrib, non-free, non-free-firmware]
        signed_by: /usr/share/keyrings/debian-archive-keyring.gpg
      - uris: [http://deb.debian.org/debian-security]
        suites: [bookworm-security]
        components: [main, contrib, non-free, non-free-firmware]
        signed_by: /usr/share/keyrings/debian-archive-keyring.gpg
    work_dir: ~/.cache/autoglm-bundle/apt-state
    archives_dir: ~/.cache/autoglm-bundle/apt-archives
"""

RETURN = r"""
packages:
  description: The closure, sorted by name.
  returned: always
  type: list
  elements: dict
  sample: [{name: docker.io, version: 20.10.24+dfsg1-1+deb12u1, arch: amd64, size: 26329732, cached: true}]
versions:
  description: Name to version of every package of the closure.
  returned: always
  type: dict
  sample: {docker.io: 20.10.24+dfsg1-1+deb12u1}
totals:
  description: Counts and bytes of the closure, what was already downloaded and what was (or would be) fetched.
  returned: always
  type: dict
  sample: {packages: 121, bytes: 190000000, cached_packages: 100, cached_bytes: 150000000, download_packages: 21,
           download_bytes: 40000000}
fingerprint:
  description: Fingerprint of the repository's signing key (C(bundle-repo.gpg)).
  returned: when not in check mode
  type: str
  sample: 5D3E...
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._apt_repo import (
    AptRepoError,
    PrivateApt,
    read_fingerprint,
    repo_is_current,
    write_repo,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "packages": {"type": "list", "elements": "str", "required": True},
            "sources": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "uris": {"type": "list", "elements": "str", "required": True},
                    "suites": {"type": "list", "elements": "str", "required": True},
                    "components": {"type": "list", "elements": "str", "required": True},
                    "signed_by": {"type": "path", "required": True},
                },
            },
            "codename": {"type": "str", "default": "bookworm"},
            "architecture": {"type": "str", "default": "amd64"},
            "work_dir": {"type": "path", "required": True},
            "archives_dir": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    for name in ("apt-get", "apt-cache", "gpg"):
        if module.get_bin_path(name) is None:
            module.fail_json(msg="%s is not on this machine; build bundles on a Debian or Ubuntu machine (apt-get, "
                                 "apt-cache and gpg: apt and gnupg packages)" % name)
    for n, src in enumerate(p["sources"]):
        if not os.path.isfile(src["signed_by"]):
            module.fail_json(msg="sources[%d].signed_by %s is not a file on this machine; install the target "
                                 "release's archive keyring (debian-archive-keyring)" % (n, src["signed_by"]))
    try:
        apt = PrivateApt(p["work_dir"], p["archives_dir"], p["sources"], p["architecture"])
        apt.update()
        pkgs = apt.resolve(p["packages"])
        cached = {(x["name"], x["version"]): apt.cached(x) for x in pkgs}
        totals = {
            "packages": len(pkgs),
            "bytes": sum(x["size"] for x in pkgs),
            "cached_packages": sum(1 for v in cached.values() if v),
            "cached_bytes": sum(x["size"] for x in pkgs if cached[(x["name"], x["version"])]),
        }
        totals["download_packages"] = totals["packages"] - totals["cached_packages"]
        totals["download_bytes"] = totals["bytes"] - totals["cached_bytes"]
        result = {
            "packages": [{"name": x["name"], "version": x["version"], "arch": x["arch"], "size": x["size"],
                          "cached": cached[(x["name"], x["version"])]} for x in pkgs],
            "versions": {x["name"]: x["version"] for x in pkgs},
            "totals": totals,
            "changed": False,
        }
        if module.check_mode:
            result["changed"] = not repo_is_current(p["dest"], pkgs)
            module.exit_json(**result)
        apt.download(pkgs, missing=[x for x in pkgs if not cached[(x["name"], x["version"])]])
        fingerprint = write_repo(p["dest"], pkgs, p["archives_dir"], p["codename"], p["architecture"])
        result["changed"] = fingerprint is not None
        result["fingerprint"] = fingerprint or read_fingerprint(p["dest"])
    except AptRepoError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="cannot write the repository or the apt cache: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
