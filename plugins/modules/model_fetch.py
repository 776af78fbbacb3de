#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_fetch
short_description: Fetch model weights from mirrors, verified against an OpenSSF model-signing signature
version_added: 0.1.0
description:
  - Places a model (a directory of weight, config and tokenizer files) in O(dest), fetched from an ordered list of
    O(sources), and checks every byte against SHA-256 digests it trusts.
  - Signed mode (the default) reads the bundle written by C(model_signing sign key) (OpenSSF model-signing, key
    mode) and verifies it with O(public_key) B(before) anything is downloaded. The signed statement must be for
    O(model_id) at O(revision) (C(scripts/model-sign) records both); a signature for any other model or revision
    is refused before anything is downloaded, naming both. The file list, the SHA-256 and the size of every file
    come from the signed in-toto statement; a mirror that reports another size is skipped for that file. After
    the files are placed, the library's own verify runs over O(dest), so extra, missing or changed files fail the
    task. The verified bundle is kept as C(<dest>/model.sig).
  - Unsigned mode reads a JSON list of C({path, size, sha256}) (O(manifest)); it is used only with
    O(require_signature=false) and the result says RV(signed=false).
  - Every file is fetched with HTTP Range requests over O(connections) connections, O(parallel_files) files at a
    time. Bytes go to C(<dest>/.partial/<file>.part) at their offsets, with a C(.state) sidecar listing the
    finished chunks, so a run that was killed resumes where it stopped. SHA-256 is computed while the file
    downloads, by a cursor that hashes finished chunks in order. A file is fsynced and renamed into place only
    when its digest matches.
  - Faults are retried per range with exponential backoff and jitter (O(retries)); a source that keeps failing
    for a file hands it to the next source. A server that ignores Range is read as one stream. Wrong
    Content-Range, short bodies, HTML error pages and digest mismatches are detected; when they persist the task
    fails naming the file, the source and the fault. Free disk space is checked before anything is downloaded.
  - Files already in O(dest) with the right digest are not fetched again.
  - With O(verified_record), a run that has verified O(dest) records each file's size, mtime, ctime, inode and
    device with its digest. A later run trusts a recorded digest only for a file whose stat is exactly the
    recorded one (a write changes mtime and ctime, and ctime cannot be set back), and when nothing is fetched and
    O(dest) holds exactly the recorded files, it does not repeat the final verification either, so an
    unchanged run reads no byte of the weights. Without it every byte is hashed on every run, twice in signed mode.
  - Why a module - no maintained module downloads in parallel with resume and checks a model-signing signature;
    M(ansible.builtin.get_url) fetches one file in one stream and checks one checksum.
author: autoglm.fleet maintainers (@autoglm)
extends_documentation_fragment:
  - autoglm.fleet.attributes
attributes:
  check_mode:
    support: full
    details:
      - Verifies the signature, probes the sources for sizes and reports which files would be fetched and how many
        bytes; writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Files already in O(dest) with the right digest are not fetched again.
requirements:
  - model-signing and pyopenssl on the managed host, for signed mode (the C(runtime) venv carries both)
options:
  dest:
    description:
      - Directory the model is placed in. Created when missing.
    type: path
    required: true
  sources:
    description:
      - Where to fetch from, in order of preference. A file that fails on one source is fetched from the next.
    type: list
    elements: dict
    required: true
    suboptions:
      url:
        description:
          - Base URL. For C(http) the file C(a/b.bin) is C(<url>/a/b.bin); for C(hf)
            C(<url>/<model_id>/resolve/<revision>/a/b.bin); for C(modelscope)
            C(<url>/api/v1/models/<model_id>/repo?Revision=<revision>&FilePath=a/b.bin); for C(file) a
            C(file:///path) (or a plain path) to a directory on the managed host, for offline bundles.
        type: str
        required: true
      type:
        description:
          - Kind of source.
        type: str
        choices: [http, hf, modelscope, file]
        default: http
  model_id:
    description:
      - Model name, for example C(zai-org/GLM-4.5). It is the path on C(hf) and C(modelscope) sources.
      - In signed mode it is required, and the signature must be for this model (C(scripts/model-sign --model-id)).
    type: str
    default: ''
  revision:
    description:
      - Revision (branch, tag or commit) on C(hf) and C(modelscope) sources.
      - In signed mode the signature must be for this revision (C(scripts/model-sign --revision)).
    type: str
    default: main
  public_key:
    description:
      - PEM public key (EC) on the managed host that the signature must verify with. Setting it selects signed
        mode.
    type: path
  signature:
    description:
      - The signature bundle. An absolute path is read on the managed host; a relative name is fetched from the
        sources (the first that has it).
    type: str
    default: model.sig
  require_signature:
    description:
      - Refuse to run without O(public_key). Set to V(false) to accept an unsigned O(manifest).
    type: bool
    default: true
  manifest:
    description:
      - The unsigned manifest (JSON list of C({path, size, sha256})), used when O(public_key) is not set and
        O(require_signature=false). An absolute path is read on the managed host; a relative name is fetched
        from the sources.
    type: str
    default: manifest.json
  headers:
    description:
      - Extra HTTP request headers sent to every source (API keys, cookies). Like O(token) they are credentials;
        a redirect to another scheme, host or port gets none of them, and a redirect from https to http is
        refused.
    type: dict
    default: {}
  token:
    description:
      - Bearer token sent as C(Authorization) to the sources, never to another scheme, host or port they redirect
        to.
    type: str
  ca_path:
    description:
      - CA bundle (PEM) for HTTPS sources; the system store by default.
    type: path
  connections:
    description:
      - Connections (concurrent ranges) per file.
    type: int
    default: 8
  parallel_files:
    description:
      - Files fetched at the same time.
    type: int
    default: 4
  chunk_size:
    description:
      - Bytes per range request. A killed run re-fetches at most the chunks that were in flight.
    type: int
    default: 16777216
  retries:
    description:
      - Retries per range (and per probe) on one source before the file moves on to the next source.
    type: int
    default: 5
  timeout:
    description:
      - Seconds to wait for a connection or for data before the attempt counts as failed.
    type: float
    default: 30
  rate_limit:
    description:
      - Cap on the total download rate in bytes per second over all connections; V(0) means no cap.
    type: int
    default: 0
  verified_record:
    description:
      - A file (outside O(dest)) where the module keeps what its last full verification of O(dest) saw, keyed by
        the signature (or manifest) it verified against; written C(0600) and atomically, removed before a run
        changes O(dest). Omit it to hash every byte on every run.
      - The record is as trustworthy as the directory it lives in; keep it where only root writes, like O(dest).
    type: path
notes:
  - Signing happens elsewhere, with C(scripts/model-sign) (a wrapper of C(model_signing sign key)); keep the
    private key off the fleet. See C(docs/model-weights.md).
seealso:
  - name: OpenSSF model-signing
    description: The signature format and library.
    link: https://github.com/sigstore/model-transparency
"""

EXAMPLES = r"""
- name: Fetch GLM weights from the internal mirror, falling back to a Hugging Face compatible endpoint
  autoglm.fleet.model_fetch:
    dest: /srv/models/GLM-4.5
    model_id: zai-org/GLM-4.5
    revision: main
    sources:
      - url: http://mirror.internal/models/GLM-4.5
      - url: https://hf-mirror.example.com
        type: hf
    public_key: /etc/autoglm/model-signing.pub
    token: "{{ model_mirror_token | default(omit) }}"
  register: weights

- name: Copy from an offline bundle with an unsigned manifest (lab only)
  autoglm.fleet.model_fetch:
    dest: /srv/models/tiny
    sources:
      - url: file:///mnt/bundle/tiny
        type: file
    require_signature: false
"""

RETURN = r"""
model_path:
  description: The model directory (O(dest)); every file listed by the signature or manifest is in it, verified.
  returned: always
  type: str
  sample: /srv/models/GLM-4.5
signed:
  description: Whether the file list came from a verified signature (false means an unsigned manifest was trusted).
  returned: always
  type: bool
  sample: true
signature:
  description: The verified signature bundle kept in O(dest).
  returned: when signed and not in check mode
  type: str
  sample: /srv/models/GLM-4.5/model.sig
files:
  description: One entry per file of the model, in manifest order.
  returned: always
  type: list
  elements: dict
  sample:
    - path: model-00001-of-00002.safetensors
      size: 4993828416
      status: fetched
      bytes: 4993828416
      resumed_bytes: 0
      seconds: 41.2
      throughput: 121209427
      source: http://mirror.internal/models/GLM-4.5
  contains:
    path:
      description: Path inside the model.
      type: str
    size:
      description: File size in bytes.
      type: int
    status:
      description: V(fetched), V(resumed) (part of it came from an earlier run), V(present) (already in place),
        or V(would_fetch) in check mode.
      type: str
    bytes:
      description: Bytes transferred for this file in this run (in check mode, bytes that would be).
      type: int
    resumed_bytes:
      description: Bytes reused from an earlier, interrupted run.
      type: int
    seconds:
      description: Time spent on the file.
      type: float
    throughput:
      description: Bytes per second for the file.
      type: int
    source:
      description: URL of the source the file came from (would come from, in check mode); null when present.
      type: str
verified:
  description: >-
    V(hashed) when this run hashed the files and verified O(dest) itself; V(record) when every file and the whole
    of O(dest) were exactly as O(verified_record) recorded them, so nothing was hashed.
  returned: when not in check mode
  type: str
  sample: record
totals:
  description: Counts and sums over all files.
  returned: always
  type: dict
  sample: {files: 12, fetched: 10, resumed: 1, present: 1, bytes: 98765432100, size: 98765440000,
           seconds: 812.5, throughput: 121557453}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._download import FetchError, Options
from ansible_collections.autoglm.fleet.plugins.module_utils._model_fetch import fetch_model
from ansible_collections.autoglm.fleet.plugins.module_utils._model_manifest import ManifestError


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "sources": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "url": {"type": "str", "required": True},
                    "type": {"type": "str", "default": "http", "choices": ["http", "hf", "modelscope", "file"]},
                },
            },
            "model_id": {"type": "str", "default": ""},
            "revision": {"type": "str", "default": "main"},
            "public_key": {"type": "path"},
            "signature": {"type": "str", "default": "model.sig"},
            "require_signature": {"type": "bool", "default": True},
            "manifest": {"type": "str", "default": "manifest.json"},
            "headers": {"type": "dict", "default": {}, "no_log": True},
            "token": {"type": "str", "no_log": True},
            "ca_path": {"type": "path"},
            "connections": {"type": "int", "default": 8},
            "parallel_files": {"type": "int", "default": 4},
            "chunk_size": {"type": "int", "default": 16777216},
            "retries": {"type": "int", "default": 5},
            "timeout": {"type": "float", "default": 30},
            "rate_limit": {"type": "int", "default": 0},
            "verified_record": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    for name in ("connections", "parallel_files", "chunk_size"):
        if p[name] < 1:
            module.fail_json(msg="%s must be a positive integer, got %d" % (name, p[name]))
    if p["retries"] < 0 or p["rate_limit"] < 0:
        module.fail_json(msg="retries and rate_limit must not be negative")
    opts = Options(connections=p["connections"], parallel_files=p["parallel_files"], chunk_size=p["chunk_size"],
                   retries=p["retries"], timeout=p["timeout"], rate_limit=p["rate_limit"],
                   headers=p["headers"], token=p["token"], ca_path=p["ca_path"], warn=module.warn)
    try:
        result = fetch_model(p["dest"], p["sources"], opts, model_id=p["model_id"], revision=p["revision"],
                             public_key=p["public_key"], signature=p["signature"], manifest=p["manifest"],
                             require_signature=p["require_signature"], check_mode=module.check_mode,
                             verified_record=p["verified_record"])
    except (FetchError, ManifestError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="cannot write to %s: %s; run with become or choose a writable dest"
                         % (p["dest"], exc), exception=traceback.format_exc())
    result.pop("source_of_list", None)
    result.pop("unsigned_manifest", None)
    # "model_path", not "dest": AnsibleModule would add file attributes of a returned "dest" to the result
    result["model_path"] = result.pop("dest")
    if not result["signed"]:
        module.warn("model %s was fetched against an UNSIGNED manifest (require_signature: false)" % p["dest"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
