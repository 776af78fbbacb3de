# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the runtime on a host records and serves, read without changing anything, for the runtime_state module.

Standard library only (it runs with the host's own Python, also on a host without the runtime venv).

- The state files: ``<state_dir>/<name>.json``, written whole by the roles (model_serve.json: the digest, weights
  revision and live colour serving; model_image.json: the version published; drain.json: a host taken out by
  driver_upgrade.yml). A missing file is not an error (the host never had that state); a file that is not a JSON
  object is reported by name, never raised.
- The runtime venv's Python: an executable file at the given path (_host_probe's check).
- Readiness: one GET of a local URL (the model server's /health/ready) through Ansible's open_url; its HTTP status,
  or -1 when nothing answered.
"""

from __future__ import annotations

import json
import os
import re
from urllib.error import HTTPError, URLError

from ansible.module_utils.urls import open_url
from ansible_collections.autoglm.fleet.plugins.module_utils._host_probe import find_executable

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_STATE_BYTES = 1024 * 1024  # a state file is a few kilobytes; a larger one is not ours


class RuntimeStateError(ValueError):
    """Input the reader refuses (a relative state directory, a name that is not a plain file name)."""


def read_state_files(state_dir, names):
    """({name: parsed JSON object}, {name: why it could not be read}) for the files that exist."""
    if not state_dir or not os.path.isabs(state_dir):
        raise RuntimeStateError("state_dir must be an absolute path (it is %r)" % (state_dir,))
    found, errors = {}, {}
    for name in names:
        if not NAME.match(name or "") or name in (".", ".."):
            raise RuntimeStateError("state file names are plain names such as model_serve (got %r)" % (name,))
        path = os.path.join(state_dir, name + ".json")
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors[name] = "cannot read %s: %s" % (path, exc.strerror or exc)
            continue
        if len(raw) > MAX_STATE_BYTES:
            errors[name] = "%s is larger than %d bytes" % (path, MAX_STATE_BYTES)
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            errors[name] = "%s is not JSON: %s" % (path, exc)
            continue
        if not isinstance(value, dict):
            errors[name] = "%s is not a JSON object" % path
            continue
        found[name] = value
    return found, errors


def probe_ready(url, timeout):
    """{"checked": True, "url", "status": HTTP status or -1, "ok": status == 200, "error": None or why}. No proxy (the
    URL is the host's own), no redirect followed (a redirect's status is the answer)."""
    if not re.match(r"^https?://", url or ""):
        raise RuntimeStateError("ready_url must be an http:// or https:// URL (it is %r)" % (url,))
    status, error = -1, None
    try:
        with open_url(url, timeout=timeout, use_proxy=False, follow_redirects="none") as response:
            status = response.status
    except HTTPError as exc:
        status = exc.code
    except (URLError, OSError, ValueError) as exc:
        error = str(getattr(exc, "reason", None) or exc)
    return {"checked": True, "url": url, "status": status, "ok": status == 200, "error": error}


NOT_ASKED = {"checked": False, "url": None, "status": None, "ok": False, "error": None}


def runtime_state(state_dir, state_files, runtime_python=None, ready_url=None, ready_timeout=3):
    """What the runtime_state module returns: {"state", "state_errors", "runtime_python_present", "ready"}."""
    state, errors = read_state_files(state_dir, state_files)
    return {
        "state": state,
        "state_errors": errors,
        "runtime_python_present": bool(runtime_python) and find_executable("/", runtime_python, "") is not None,
        "ready": probe_ready(ready_url, ready_timeout) if ready_url else dict(NOT_ASKED),
    }
