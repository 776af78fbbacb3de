# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What Docker's daemon.json may hold: a table of known keys and their checks, and the validators (private).

Private helper of the ``autoglm.fleet.docker_daemon_config`` module. ``structural_errors`` checks the type
and shape of every key it knows (keys it does not know pass: Docker adds keys in new releases);
``select_validator`` prefers ``dockerd --validate`` where the installed dockerd has it. Nothing in here
imports Ansible: the module hands in a ``run`` callable (``argv -> (rc, stdout, stderr)``).
"""

from __future__ import annotations

import ipaddress
import posixpath
from urllib.parse import urlsplit

BUILTIN_RUNTIMES = ("runc", "io.containerd.runc.v2")


def json_type(value):
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
    return [] if isinstance(value, str) else ["'%s' must be a string, got %s" % (key, json_type(value))]


def _check_bool(key, value):
    return [] if isinstance(value, bool) else ["'%s' must be true or false, got %s" % (key, json_type(value))]


def _check_int(key, value):
    return [] if _is_int(value) else ["'%s' must be an integer, got %s" % (key, json_type(value))]


def _check_non_negative_int(key, value):
    if _is_int(value) and value >= 0:
        return []
    return ["'%s' must be an integer >= 0, got %r" % (key, value)]


def _check_positive_int(key, value):
    if _is_int(value) and value > 0:
        return []
    return ["'%s' must be a positive integer, got %r (%s)" % (key, value, json_type(value))]


def _check_str_list(key, value):
    if _is_str_list(value):
        return []
    return ["'%s' must be a list of strings, got %s" % (key, json_type(value))]


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
    return ["'%s' must be an object of string values, got %s" % (key, json_type(value))]


def _check_bool_map(key, value):
    if not isinstance(value, dict):
        return ["'%s' must be an object of true/false values, got %s" % (key, json_type(value))]
    bad = sorted(k for k, v in value.items() if not isinstance(v, bool))
    return ["'%s' values must be true or false; not booleans: %s" % (key, ", ".join(bad))] if bad else []


def _check_object(key, value):
    return [] if isinstance(value, dict) else ["'%s' must be an object, got %s" % (key, json_type(value))]


def _choice(*choices):
    def check(key, value):
        if value in choices:
            return []
        return ["'%s' must be one of %s, got %r" % (key, ", ".join(choices), value)]

    return check


def _check_urls(key, value):
    if not _is_str_list(value):
        return ["'%s' must be a list of URLs, got %s" % (key, json_type(value))]
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
        return ["'%s' must be a list of IP addresses, got %s" % (key, json_type(value))]
    errors = []
    for item in value:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            errors.append("'%s' entry %r is not an IP address" % (key, item))
    return errors


def _check_exec_opts(key, value):
    if not _is_str_list(value):
        return ["'%s' must be a list of strings, got %s" % (key, json_type(value))]
    template = "'%s' entry %r must be key=value (e.g. native.cgroupdriver=systemd)"
    return [template % (key, opt) for opt in value if "=" not in opt]


def _check_address_pools(key, value):
    if not isinstance(value, list):
        return ["'%s' must be a list of {base, size} objects, got %s" % (key, json_type(value))]
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
        return ["'%s' must be an object of name -> {path, runtimeArgs}, got %s" % (key, json_type(value))]
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
        return ["'%s' must be an object of name -> {Name, Hard, Soft}, got %s" % (key, json_type(value))]
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
