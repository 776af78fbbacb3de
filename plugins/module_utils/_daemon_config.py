# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Merge, validate and atomically write Docker's daemon.json.

Private helper of the ``autoglm.fleet.docker_daemon_config`` module. Nothing in here imports
Ansible: the module hands in a ``run`` callable (``argv -> (rc, stdout, stderr)``) for the one
place that runs a process (``dockerd``), so the logic is unit tested on real files directly.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import os
import posixpath
import shutil
import stat
import tempfile
import time

from ansible_collections.autoglm.fleet.plugins.module_utils._fsutil import fsync_dir

try:  # grp/pwd exist on every POSIX host this module supports; guard for sanity's import test
    import grp
    import pwd
except ImportError:  # pragma: no cover
    grp = pwd = None

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    urlsplit = None

DEFAULT_PATH = "/etc/docker/daemon.json"
DEFAULT_MODE = 0o644
BUILTIN_RUNTIMES = ("runc", "io.containerd.runc.v2")


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
            % (path, _json_type(data))
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
                    % (entry, "/".join(segments[: depth + 1]), _json_type(node), "/".join(segments[: depth + 1]))
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
        raise DaemonConfigError("'settings' must be a dictionary of daemon.json keys, got a %s." % _json_type(settings))
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


def insecure_registries(config):
    """The non-empty ``insecure-registries`` value of ``config``, or an empty list."""
    value = config.get("insecure-registries")
    if not value:
        return []
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _json_type(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return type(value).__name__


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value):
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _check_str(key, value):
    return [] if isinstance(value, str) else ["'%s' must be a string, got %s" % (key, _json_type(value))]


def _check_bool(key, value):
    return [] if isinstance(value, bool) else ["'%s' must be true or false, got %s" % (key, _json_type(value))]


def _check_int(key, value):
    return [] if _is_int(value) else ["'%s' must be an integer, got %s" % (key, _json_type(value))]


def _check_non_negative_int(key, value):
    if _is_int(value) and value >= 0:
        return []
    return ["'%s' must be an integer >= 0, got %r" % (key, value)]


def _check_positive_int(key, value):
    if _is_int(value) and value > 0:
        return []
    return ["'%s' must be a positive integer, got %r (%s)" % (key, value, _json_type(value))]


def _check_str_list(key, value):
    if _is_str_list(value):
        return []
    return ["'%s' must be a list of strings, got %s" % (key, _json_type(value))]


def _check_abs_path(key, value):
    if isinstance(value, str) and posixpath.isabs(value):
        return []
    return ["'%s' must be an absolute path, got %r" % (key, value)]


def _check_str_map(key, value):
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return []
    if isinstance(value, dict):
        bad = sorted(k for k, v in value.items() if not isinstance(v, str))
        return [
            "'%s' values must be strings (quote numbers, e.g. \"3\"); not strings: %s" % (key, ", ".join(bad))
        ]
    return ["'%s' must be an object of string values, got %s" % (key, _json_type(value))]


def _check_bool_map(key, value):
    if not isinstance(value, dict):
        return ["'%s' must be an object of true/false values, got %s" % (key, _json_type(value))]
    bad = sorted(k for k, v in value.items() if not isinstance(v, bool))
    return ["'%s' values must be true or false; not booleans: %s" % (key, ", ".join(bad))] if bad else []


def _check_object(key, value):
    return [] if isinstance(value, dict) else ["'%s' must be an object, got %s" % (key, _json_type(value))]


def _choice(*choices):
    def check(key, value):
        if value in choices:
            return []
        return ["'%s' must be one of %s, got %r" % (key, ", ".join(choices), value)]

    return check


def _check_urls(key, value):
    if not _is_str_list(value):
        return ["'%s' must be a list of URLs, got %s" % (key, _json_type(value))]
    errors = []
    for item in value:
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append("'%s' entry %r must be an http:// or https:// URL with a host" % (key, item))
        elif parts.query or parts.fragment:
            errors.append("'%s' entry %r must not have a query or fragment" % (key, item))
    return errors


def _check_ips(key, value):
    if not _is_str_list(value):
        return ["'%s' must be a list of IP addresses, got %s" % (key, _json_type(value))]
    errors = []
    for item in value:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            errors.append("'%s' entry %r is not an IP address" % (key, item))
    return errors


def _check_exec_opts(key, value):
    if not _is_str_list(value):
        return ["'%s' must be a list of strings, got %s" % (key, _json_type(value))]
    template = "'%s' entry %r must be key=value (e.g. native.cgroupdriver=systemd)"
    return [template % (key, opt) for opt in value if "=" not in opt]


def _check_address_pools(key, value):
    if not isinstance(value, list):
        return ["'%s' must be a list of {base, size} objects, got %s" % (key, _json_type(value))]
    errors = []
    for index, pool in enumerate(value):
        where = "'%s'[%d]" % (key, index)
        if not isinstance(pool, dict) or "base" not in pool or "size" not in pool:
            errors.append("%s must be an object with 'base' (a CIDR) and 'size' (a prefix length)" % where)
            continue
        try:
            network = ipaddress.ip_network(pool["base"], strict=False)
        except (TypeError, ValueError):
            errors.append("%s base %r is not a CIDR such as 10.200.0.0/16" % (where, pool["base"]))
            continue
        size = pool["size"]
        if not _is_int(size) or not network.prefixlen <= size <= network.max_prefixlen:
            errors.append(
                "%s size %r must be an integer between %d and %d"
                % (where, size, network.prefixlen, network.max_prefixlen)
            )
    return errors


def _check_runtimes(key, value):
    if not isinstance(value, dict):
        return ["'%s' must be an object of name -> {path, runtimeArgs}, got %s" % (key, _json_type(value))]
    errors = []
    for name, spec in value.items():
        where = "'%s.%s'" % (key, name)
        if not isinstance(spec, dict):
            errors.append("%s must be an object with 'path' (and optional 'runtimeArgs')" % where)
            continue
        if "path" in spec:
            if not isinstance(spec["path"], str) or not spec["path"]:
                errors.append("%s path must be a non-empty string" % where)
        elif "runtimeType" not in spec:
            errors.append("%s needs 'path' (the runtime binary, e.g. /usr/bin/nvidia-container-runtime)" % where)
        if "runtimeArgs" in spec and not _is_str_list(spec["runtimeArgs"]):
            errors.append("%s runtimeArgs must be a list of strings" % where)
        if "runtimeType" in spec and not isinstance(spec["runtimeType"], str):
            errors.append("%s runtimeType must be a string" % where)
        if "options" in spec and not isinstance(spec["options"], dict):
            errors.append("%s options must be an object" % where)
    return errors


def _check_ulimits(key, value):
    if not isinstance(value, dict):
        return ["'%s' must be an object of name -> {Name, Hard, Soft}, got %s" % (key, _json_type(value))]
    errors = []
    for name, spec in value.items():
        if not isinstance(spec, dict) or not all(_is_int(spec.get(f)) for f in ("Hard", "Soft")):
            errors.append("'%s.%s' must be an object with integer 'Hard' and 'Soft'" % (key, name))
    return errors


# Docker's daemon.json keys (Linux) and what each must hold. Keys not listed pass unchecked:
# Docker adds keys in new releases and the structural check must not reject them.
KNOWN_KEYS = {
    "allow-nondistributable-artifacts": _check_str_list,
    "api-cors-header": _check_str,
    "authorization-plugins": _check_str_list,
    "bip": _check_str,
    "bridge": _check_str,
    "builder": _check_object,
    "cdi-spec-dirs": _check_str_list,
    "cgroup-parent": _check_str,
    "containerd": _check_str,
    "containerd-namespace": _check_str,
    "containerd-plugins-namespace": _check_str,
    "data-root": _check_abs_path,
    "debug": _check_bool,
    "default-address-pools": _check_address_pools,
    "default-cgroupns-mode": _choice("private", "host"),
    "default-gateway": _check_str,
    "default-gateway-v6": _check_str,
    "default-ipc-mode": _choice("shareable", "private"),
    "default-network-opts": _check_object,
    "default-runtime": _check_str,
    "default-shm-size": _check_str,
    "default-ulimits": _check_ulimits,
    "dns": _check_ips,
    "dns-opts": _check_str_list,
    "dns-search": _check_str_list,
    "exec-opts": _check_exec_opts,
    "exec-root": _check_abs_path,
    "experimental": _check_bool,
    "features": _check_bool_map,
    "fixed-cidr": _check_str,
    "fixed-cidr-v6": _check_str,
    "group": _check_str,
    "hosts": _check_str_list,
    "icc": _check_bool,
    "init": _check_bool,
    "init-path": _check_str,
    "insecure-registries": _check_str_list,
    "ip": _check_str,
    "ip-forward": _check_bool,
    "ip-masq": _check_bool,
    "ip6tables": _check_bool,
    "iptables": _check_bool,
    "ipv6": _check_bool,
    "labels": _check_str_list,
    "live-restore": _check_bool,
    "log-driver": _check_str,
    "log-format": _choice("text", "json"),
    "log-level": _choice("debug", "info", "warn", "error", "fatal"),
    "log-opts": _check_str_map,
    "max-concurrent-downloads": _check_positive_int,
    "max-concurrent-uploads": _check_positive_int,
    "max-download-attempts": _check_positive_int,
    "metrics-addr": _check_str,
    "mtu": _check_non_negative_int,
    "no-new-privileges": _check_bool,
    "node-generic-resources": _check_str_list,
    "oom-score-adjust": _check_int,
    "pidfile": _check_abs_path,
    "proxies": _check_str_map,
    "raw-logs": _check_bool,
    "registry-mirrors": _check_urls,
    "runtimes": _check_runtimes,
    "seccomp-profile": _check_str,
    "selinux-enabled": _check_bool,
    "shutdown-timeout": _check_non_negative_int,
    "storage-driver": _check_str,
    "storage-opts": _check_str_list,
    "swarm-default-advertise-addr": _check_str,
    "tls": _check_bool,
    "tlscacert": _check_str,
    "tlscert": _check_str,
    "tlskey": _check_str,
    "tlsverify": _check_bool,
    "userland-proxy": _check_bool,
    "userland-proxy-path": _check_str,
    "userns-remap": _check_str,
}


def structural_errors(config):
    """Every problem the known-key table finds in ``config`` (an empty list when it is sound)."""
    errors = []
    for key, value in config.items():
        check = KNOWN_KEYS.get(key)
        if check is not None:
            errors.extend(check(key, value))
    runtime = config.get("default-runtime")
    if isinstance(runtime, str):
        runtimes = config.get("runtimes")
        defined = list(runtimes) if isinstance(runtimes, dict) else []
        if runtime not in BUILTIN_RUNTIMES and runtime not in defined:
            errors.append(
                "'default-runtime' %r names no runtime: define it under 'runtimes' or use one of %s"
                % (runtime, ", ".join(list(BUILTIN_RUNTIMES) + defined))
            )
    return errors


class StructuralValidator:
    """Checks known keys and their types in Python; used where dockerd has no --validate."""

    name = "structural"

    def validate(self, config, path):
        return structural_errors(config)


class DockerdValidator:
    """Runs ``dockerd --validate --config-file <path>`` (Docker 23 and later)."""

    name = "dockerd"

    def __init__(self, dockerd, run):
        self.dockerd = dockerd
        self.run = run

    def validate(self, config, path):
        rc, out, err = self.run([self.dockerd, "--validate", "--config-file", path])
        if rc == 0:
            return []
        message = " ".join((err or out or "").split()) or "dockerd --validate exited with %d" % rc
        return [message]


def dockerd_supports_validate(dockerd, run):
    """True when ``dockerd --help`` lists ``--validate`` (added in Docker 23)."""
    try:
        rc, out, err = run([dockerd, "--help"])
    except OSError:
        return False
    return rc == 0 and "--validate" in (out or "") + (err or "")


def select_validator(dockerd, run):
    """The dockerd validator when ``dockerd`` (a path or None) supports --validate, else structural."""
    if dockerd and run is not None and dockerd_supports_validate(dockerd, run):
        return DockerdValidator(dockerd, run)
    return StructuralValidator()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def parse_mode(mode):
    """``'0644'``/``'644'``/``420`` -> 0o644; None -> the default 0644."""
    if mode is None:
        return DEFAULT_MODE
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    elif isinstance(mode, str) and mode.isdigit() and all(c in "01234567" for c in mode) and len(mode) <= 4:
        value = int(mode, 8)
    else:
        raise DaemonConfigError("'mode' must be an octal string such as '0644', got %r." % (mode,))
    if not 0 <= value <= 0o7777:
        raise DaemonConfigError("'mode' %r is out of range; use an octal string such as '0644'." % (mode,))
    return value


def resolve_owner(owner):
    """A user name or numeric id -> uid; None -> None (keep the writer's uid)."""
    if owner is None or owner == "":
        return None
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        if str(owner).isdigit():
            return int(owner)
        raise DaemonConfigError(
            "'owner' %r does not exist on the host; create the user or pick another." % owner
        ) from None


def resolve_group(group):
    """A group name or numeric id -> gid; None -> None (keep the writer's gid)."""
    if group is None or group == "":
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if str(group).isdigit():
            return int(group)
        raise DaemonConfigError(
            "'group' %r does not exist on the host; create the group or pick another." % group
        ) from None


def backup_name(path, now=None):
    """``<path>.<pid>.<YYYY-MM-DD@HH:MM:SS>~``, the name Ansible's own ``backup: true`` uses."""
    stamp = time.strftime("%Y-%m-%d@%H:%M:%S", time.localtime(now))
    return "%s.%d.%s~" % (path, os.getpid(), stamp)


def make_backup(path):
    """Copy ``path`` next to itself, keeping mode, times and (as root) owner; return the copy's path."""
    dest = backup_name(path)
    shutil.copy2(path, dest)
    st = os.stat(path)
    with contextlib.suppress(PermissionError):
        os.chown(dest, st.st_uid, st.st_gid)
    return dest


def write_atomic(path, text, validator=None, config=None, mode=DEFAULT_MODE, uid=None, gid=None, backup=False):
    """Write ``text`` to ``path`` through a validated temp file; return the backup path or None.

    The temp file lives in the target directory (created if missing), is fsynced and gets the
    mode/owner of the existing file (or ``mode``/``uid``/``gid`` for a new one). ``validator``
    runs on it before ``os.replace``; on failure it is removed, the old file is untouched and
    DaemonConfigError carries the validator's findings. A symlink at ``path`` is kept: its target
    is what gets replaced (and backed up).
    """
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    try:
        st = os.stat(path)
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        if validator is not None:
            errors = validator.validate(config, tmp)
            if errors:
                raise DaemonConfigError(validation_message(path, validator.name, errors))
        backup_file = make_backup(path) if backup and st is not None else None
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
    return backup_file


def validate_detached(validator, config, text):
    """Validate without touching the target directory (check mode): a temp file in the system temp dir."""
    fd, tmp = tempfile.mkstemp(prefix="daemon-json-check.", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        return validator.validate(config, tmp)
    finally:
        os.unlink(tmp)


def validation_message(path, name, errors):
    return (
        "The new %s failed validation (%s): %s. Fix 'settings'/'remove' (or set validate: false if the "
        "validator is wrong); the existing file was left as it was." % (path, name, "; ".join(errors))
    )


# --------------------------------------------------------------------------------------------
# The whole operation
# --------------------------------------------------------------------------------------------


def apply(
    path,
    settings=None,
    remove=None,
    backup=True,
    validate=True,
    allow_insecure_registries=False,
    mode=None,
    owner=None,
    group=None,
    validator=None,
    check_mode=False,
):
    """Merge ``settings`` into / ``remove`` keys from the daemon.json at ``path``.

    Returns the module's result: changed, config, previous, changed_keys, backup_file,
    validated_with and diff. Raises DaemonConfigError for every expected failure, before anything
    is written.
    """
    previous, exists = load_config(path)
    config = compute(previous, settings, remove)

    insecure = insecure_registries(config)
    if insecure and not allow_insecure_registries:
        origin = "given in 'settings'" if "insecure-registries" in (settings or {}) else "already in %s" % path
        raise DaemonConfigError(
            "The resulting daemon.json would let Docker pull over plain HTTP from 'insecure-registries' %s (%s). "
            "Serve the registry over TLS and drop the key (remove: [insecure-registries]), or set "
            "allow_insecure_registries: true to accept it; nothing was written." % (insecure, origin)
        )

    file_mode = parse_mode(mode)
    uid, gid = resolve_owner(owner), resolve_group(group)
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
        return result

    active = None
    if validate:
        active = validator if validator is not None else StructuralValidator()
        result["validated_with"] = active.name
    if check_mode:
        if active is not None:
            errors = validate_detached(active, config, text)
            if errors:
                raise DaemonConfigError(validation_message(path, active.name, errors))
        return result

    backup_file = write_atomic(
        path, text, validator=active, config=config, mode=file_mode, uid=uid, gid=gid, backup=backup
    )
    if backup_file:
        result["backup_file"] = backup_file
    return result
