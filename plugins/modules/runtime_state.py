#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: runtime_state
short_description: Read what the runtime on a host records and serves - its state files and the model's readiness
version_added: 0.3.0
description:
  - Reads, without changing anything, the runtime's state files under O(state_dir) (written whole by the roles -
    C(model_serve.json), the digest, weights revision and live colour serving; C(model_image.json), the version
    published; C(drain.json), a host taken out of service by C(playbooks/driver_upgrade.yml)), whether the runtime
    venv's Python is there, and, with O(ready_url), the model server's readiness (one GET, its HTTP status).
  - One module run for what C(playbooks/status.yml) (C(autoglm-fleet status)) needs beside M(autoglm.fleet.host_facts),
    so the status of a fleet costs two module runs a host instead of eight (a slurp per file, a stat, a uri).
  - A state file the host does not have is left out of RV(state) (the host never had that state). One that is not a
    JSON object is named in RV(state_errors), and the module still succeeds, so one bad file does not hide a host's
    other state. Nothing that does not answer at O(ready_url) gives RV(ready.status=-1), not a failure.
  - Standard library only, so it runs with the host's own Python, also on a host without the runtime venv.
author: autoglm.fleet contributors (@autoglm)
extends_documentation_fragment:
  - autoglm.fleet.attributes
attributes:
  check_mode:
    support: full
    details: Read-only; check mode reads the same.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: It changes nothing; two runs on an unchanged host return the same.
options:
  state_dir:
    description: The runtime's state directory (the C(runtime_state_dir) fact of the C(autoglm.fleet.runtime) role).
    type: path
    required: true
  state_files:
    description: The state files to read, by name without C(.json).
    type: list
    elements: str
    default: [model_serve, model_image, drain]
  runtime_python:
    description:
      - The runtime venv's Python (the C(runtime_python_interpreter) fact); RV(runtime_python_present) says whether
        it is an executable file.
      - Run M(autoglm.fleet.gpu_facts) with that interpreter only when it is there.
    type: path
  ready_url:
    description:
      - A URL to GET from the host, for example C(http://127.0.0.1:8000/health/ready); without it RV(ready.checked)
        is V(false).
    type: str
  ready_timeout:
    description: Seconds to wait for O(ready_url).
    type: float
    default: 3
seealso:
  - module: autoglm.fleet.host_facts
  - module: autoglm.fleet.gpu_facts
"""

EXAMPLES = r"""
- name: Read the runtime's state files and ask the model whether it is ready
  autoglm.fleet.runtime_state:
    state_dir: /opt/autoglm/state
    runtime_python: /opt/autoglm/venv/bin/python
    ready_url: http://127.0.0.1:8000/health/ready
  register: _runtime

- name: Say what the host serves
  ansible.builtin.debug:
    msg: >-
      {{ (_runtime.state.model_serve | default({})).current.digest | default('nothing') }},
      ready {{ _runtime.ready.ok }}{{ ' (drained)' if 'drain' in _runtime.state else '' }}
"""

RETURN = r"""
state:
  description: Each state file read, by name, as the JSON object it holds.
  returned: always
  type: dict
  sample: {"model_serve": {"current": {"digest": "sha256:cf9a...", "weights_revision": "r1"}, "live": "blue"}}
state_errors:
  description: Each state file that exists but could not be read as a JSON object, by name, and why.
  returned: always
  type: dict
  sample: {"drain": "/opt/autoglm/state/drain.json is not JSON: Expecting value: line 1 column 1 (char 0)"}
runtime_python_present:
  description: Whether O(runtime_python) is an executable file; V(false) without O(runtime_python).
  returned: always
  type: bool
  sample: true
ready:
  description: The answer of O(ready_url).
  returned: always
  type: dict
  contains:
    checked:
      description: Whether O(ready_url) was asked.
      type: bool
    url:
      description: O(ready_url).
      type: str
    status:
      description: The HTTP status, or V(-1) when nothing answered.
      type: int
    ok:
      description: Whether the status is 200.
      type: bool
    error:
      description: Why nothing answered (connection refused, a timeout), else V(null).
      type: str
  sample: {"checked": true, "url": "http://127.0.0.1:8000/health/ready", "status": 200, "ok": true, "error": null}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._runtime_state import RuntimeStateError, runtime_state


def main():
    module = AnsibleModule(
        argument_spec={
            "state_dir": {"type": "path", "required": True},
            "state_files": {"type": "list", "elements": "str", "default": ["model_serve", "model_image", "drain"]},
            "runtime_python": {"type": "path"},
            "ready_url": {"type": "str"},
            "ready_timeout": {"type": "float", "default": 3},
        },
        supports_check_mode=True,
    )
    try:
        result = runtime_state(**module.params)
    except RuntimeStateError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
