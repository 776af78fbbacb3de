# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read Docker's daemon.json, merge settings into it and write it back, validated (private).

Private helper of the ``autoglm.fleet.docker_daemon_config`` module: reading and merging are plain
functions on JSON values; what daemon.json may hold is ``_daemon_schema``; the write goes through
``_fsutil.write_atomic`` with the module, so the file common arguments, ``backup_local`` and
``atomic_move`` do what they do for every Ansible file module.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile

from ansible_collections.autoglm.fleet.plugins.module_utils._daemon_schema import StructuralValidator, json_type
from ansible_collections.autoglm.fleet.plugins.module_utils._fsutil import write_atomic, write_temp

DEFAULT_PATH = "/etc/docker/daemon.json"
DEFAULT_MODE = 0o644


class DaemonConfigError(Exception):
    """An expected failure; ``str(err)`` is a sentence the user can act on."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def load_config(path):
    """Return ``(config, exists)`` for the daemon.json at ``path``.

    A missing file is ``({}, False)``; an empty (or whitespace only) file is ``({}, True)``.
    Invalid JSON, or JSON that is not an object, raises DaemonConfigError naming the file and,
    for a parse error, its line and column.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return {}, False
    except OSError as err:
        raise DaemonConfigError(
            "Cannot read %s: %s. Check that 'path' names a readable file (run with become)." % (path, err.strerror)
        ) from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DaemonConfigError(
            "%s is not valid UTF-8 (byte %d); fix or remove the file, nothing was written." % (path, err.start)
        ) from err
    if not text.strip():
        return {}, True
    try:
        data = json.loads(text)
    except ValueError as err:
        line = getattr(err, "lineno", "?")
        col = getattr(err, "colno", "?")
        reason = getattr(err, "msg", str(err))
        raise DaemonConfigError(
            "%s is not valid JSON: %s at line %s column %s. Fix or remove the file; nothing was written."
            % (path, reason, line, col)
        ) from err
    if not isinstance(data, dict):
        raise DaemonConfigError(
            "%s must hold a JSON object ({...}) but holds a %s. Fix or remove the file; nothing was written."
            % (path, json_type(data))
        )
    return data, True


# --------------------------------------------------------------------------------------------
# Merging and removal
# --------------------------------------------------------------------------------------------


def parse_key_path(entry):
    """Split a ``remove`` entry into its key segments.

    Segments are separated by ``/`` (``runtimes/nvidia``, ``log-opts/max-file``); inside a segment
    ``~1`` stands for ``/`` and ``~0`` for ``~``, as in a JSON pointer (RFC 6901).
    """
    if not isinstance(entry, str) or not entry:
        raise DaemonConfigError("Each 'remove' entry must be a non-empty key such as 'dns' or 'runtimes/nvidia'.")
    segments = []
    for part in entry.split("/"):
        if not part:
            raise DaemonConfigError(
                "'remove' entry %r has an empty segment; write nested keys as 'runtimes/nvidia'"
                " (no leading, trailing or doubled '/')." % entry
            )
        segments.append(part.replace("~1", "/").replace("~0", "~"))
    return tuple(segments)


def _contains_path(tree, segments):
    node = tree
    for seg in segments:
        if not isinstance(node, dict) or seg not in node:
            return False
        node = node[seg]
    return True


def remove_keys(config, entries):
    """Return a copy of ``config`` without the keys named by ``entries`` (see parse_key_path).

    A key that is absent is not an error (removal is idempotent). A path that runs through a value
    that is not an object (``registry-mirrors/x``) is.
    """
    result = copy.deepcopy(config)
    for entry in entries:
        segments = parse_key_path(entry)
        node = result
        for depth, seg in enumerate(segments[:-1]):
            if seg not in node:
                node = None
                break
            node = node[seg]
            if not isinstance(node, dict):
                raise DaemonConfigError(
                    "Cannot remove %r: %r is a %s, not an object. Remove the whole key with %r instead."
                    % (entry, "/".join(segments[: depth + 1]), json_type(node), "/".join(segments[: depth + 1]))
                )
        if node is not None:
            node.pop(segments[-1], None)
    return result


def merge_settings(config, settings):
    """Return ``config`` with ``settings`` merged in.

    Objects merge recursively with the given keys winning; lists and scalars replace. Keys that are
    not given keep their value and their place; new keys are appended in the order given.
    """
    result = copy.deepcopy(config)
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_settings(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def compute(previous, settings=None, remove=None):
    """Apply ``remove`` then ``settings`` to ``previous`` and return the new config.

    A key both set and removed is a contradiction and fails.
    """
    settings = settings or {}
    remove = remove or []
    if not isinstance(settings, dict):
        raise DaemonConfigError("'settings' must be a dictionary of daemon.json keys, got a %s." % json_type(settings))
    for entry in remove:
        segments = parse_key_path(entry)
        if _contains_path(settings, segments):
            raise DaemonConfigError(
                "%r is both in 'settings' and in 'remove'; drop it from one of them." % entry
            )
    return merge_settings(remove_keys(previous, remove), settings)


def json_equal(left, right):
    """Compare two JSON values semantically: key order does not matter, but true is not 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return len(left) == len(right) and all(json_equal(left[i], right[i]) for i in range(len(left)))
    if isinstance(left, (dict, list, tuple)) or isinstance(right, (dict, list, tuple)):
        return False
    if (left is None) != (right is None):
        return False
    if isinstance(left, str) != isinstance(right, str):
        return False
    return left == right


def changed_keys(before, after):
    """Top-level keys whose values were changed, added or removed (new order first, then removed)."""
    keys = [k for k in after if k not in before or not json_equal(before[k], after[k])]
    keys.extend(k for k in before if k not in after)
    return keys


def render(config):
    """daemon.json text as written: two-space indent, keys in their order, trailing newline."""
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def _as_list(value):
    if not value:
        return []
    return value if isinstance(value, list) else [value]


def insecure_registries(config):
    """The non-empty ``insecure-registries`` value of ``config``, or an empty list."""
    return _as_list(config.get("insecure-registries"))


def unauthenticated_tcp_hosts(config):
    """``hosts`` entries that open the API on TCP while ``tlsverify`` (client certificates) is not on."""
    if config.get("tlsverify") is True:
        return []
    return [h for h in _as_list(config.get("hosts")) if isinstance(h, str) and h.lower().startswith("tcp://")]


def http_registry_mirrors(config):
    """``registry-mirrors`` entries reached over plain HTTP."""
    return [m for m in _as_list(config.get("registry-mirrors")) if isinstance(m, str) and m.lower().startswith("http:")]


# What a daemon.json must not do without an explicit opt-in: (key, finder, option, why, the safe way)
POLICY = (
    ("insecure-registries", insecure_registries, "allow_insecure_registries",
     "would let Docker pull over plain HTTP from 'insecure-registries' %s",
     "Serve the registry over TLS and drop the key (remove: [insecure-registries])"),
    ("hosts", unauthenticated_tcp_hosts, "allow_insecure_tcp_hosts",
     "would open Docker's API on %s in 'hosts' without TLS client authentication (tlsverify): anyone who can "
     "reach it controls the host as root",
     "Keep the API on the unix socket (remove: [hosts]), or turn on tlsverify with tlscacert, tlscert and tlskey"),
    ("registry-mirrors", http_registry_mirrors, "allow_insecure_registry_mirrors",
     "would pull Docker Hub images over plain HTTP from 'registry-mirrors' %s, where anyone on the path can "
     "swap the layers",
     "Serve the mirror over https (its CA in /etc/docker/certs.d)"),
)


def refusals(config, settings, path, allowed):
    """One sentence per POLICY rule ``config`` breaks that ``allowed`` (a set of option names) does not lift."""
    found = []
    for key, finder, option, why, fix in POLICY:
        values = finder(config)
        if values and option not in allowed:
            origin = "given in 'settings'" if key in (settings or {}) else "already in %s" % path
            found.append("The resulting daemon.json %s (%s). %s, or set %s: true to accept it"
                         % (why % (values,), origin, fix, option))
    return found


# --------------------------------------------------------------------------------------------
# Validation of a candidate file
# --------------------------------------------------------------------------------------------


def validation_message(path, name, errors):
    return (
        "The new %s failed validation (%s): %s. Fix 'settings'/'remove' (or set validate: false if the "
        "validator is wrong); the existing file was left as it was." % (path, name, "; ".join(errors))
    )


def validate_file(validator, config, path, target):
    """Run ``validator`` on the candidate file ``path``; raise DaemonConfigError naming ``target``."""
    errors = validator.validate(config, path)
    if errors:
        raise DaemonConfigError(validation_message(target, validator.name, errors))


def validate_detached(validator, config, text, target):
    """Validate without touching the target directory (check mode): a temp file in the system temp dir."""
    tmp = write_temp(tempfile.gettempdir(), text.encode("utf-8"), "daemon-json-check", durable=False)
    try:
        validate_file(validator, config, tmp, target)
    finally:
        os.unlink(tmp)


# --------------------------------------------------------------------------------------------
# The whole operation
# --------------------------------------------------------------------------------------------


def apply(module, path, settings=None, remove=None, backup=True, validate=True, allow_insecure_registries=False,
          validator=None, allow_insecure_tcp_hosts=False, allow_insecure_registry_mirrors=False):
    """Merge ``settings`` into / ``remove`` keys from the daemon.json at ``path``.

    ``module`` is the AnsibleModule: its check mode and file common arguments (mode, owner, group,
    SELinux context) apply. Returns the module's result: changed, config, previous, changed_keys,
    backup_file, validated_with and diff. Raises DaemonConfigError for every expected failure, before
    anything is written.
    """
    path = os.path.realpath(path)  # a symlink is kept: the file it points to is replaced (and backed up)
    previous, exists = load_config(path)
    config = compute(previous, settings, remove)

    allowed = {name for name, value in (("allow_insecure_registries", allow_insecure_registries),
                                        ("allow_insecure_tcp_hosts", allow_insecure_tcp_hosts),
                                        ("allow_insecure_registry_mirrors", allow_insecure_registry_mirrors)) if value}
    refused = refusals(config, settings, path, allowed)
    if refused:
        raise DaemonConfigError(". ".join(refused) + "; nothing was written.")

    changed = not json_equal(previous, config) and (exists or bool(config))
    text = render(config)
    result = {
        "changed": changed,
        "config": config,
        "previous": previous,
        "changed_keys": changed_keys(previous, config),
        "validated_with": None,
        "diff": {
            "before": render(previous) if exists else "",
            "after": text if (exists or changed) else "",
            "before_header": path,
            "after_header": path,
        },
    }
    if not changed:
        if exists:  # the content is right; the file's mode, owner or context may still need changing
            file_args = module.load_file_common_arguments(module.params, path=path)
            result["changed"] = module.set_fs_attributes_if_different(file_args, False)
        return result

    active = None
    if validate:
        active = validator if validator is not None else StructuralValidator()
        result["validated_with"] = active.name
    if module.check_mode:
        if active is not None:
            validate_detached(active, config, text, path)
        return result

    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    backup_file = write_atomic(
        path, text, mode=DEFAULT_MODE, module=module, backup=backup,
        check=None if active is None else lambda tmp: validate_file(active, config, tmp, path),
    )
    if backup_file:
        result["backup_file"] = backup_file
    return result
