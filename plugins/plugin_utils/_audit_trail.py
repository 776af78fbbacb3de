# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the audit trail records (private): the records of one run, a task's resource for known modules, and
the per-module allow-list of arguments. Plain data in, plain data out: the callback ``autoglm.fleet.audit``
turns Ansible's objects into the arguments here, and ``_audit_chain`` seals and writes the records.

Secrets: a ``no_log`` result is recorded as censored (no arguments, resource or message); otherwise only the
arguments named in ``ALLOWED_ARGS`` for the task's module are kept, never values a module declares ``no_log``
(Ansible masks them in ``invocation`` already), and credentials in URLs are dropped.
"""

from __future__ import annotations

import datetime
import re
import uuid

from ansible_collections.autoglm.fleet.plugins.plugin_utils._audit_chain import FORMAT_VERSION

RESULTS = ("ok", "changed", "failed", "skipped", "unreachable")
MAX_TEXT = 1000
MAX_ITEMS = 50

# resource field -> argument names that hold it, first present wins
_PATH_DEST = {"path": ("dest",)}
_PATH = {"path": ("path", "dest", "name")}
_PACKAGE = {"package": ("name", "pkg", "deb")}
_SERVICE = {"service": ("name", "unit")}
_IMAGE = {"image": ("name", "repository")}
RESOURCES = {
    "ansible.builtin.copy": _PATH_DEST,
    "ansible.builtin.template": _PATH_DEST,
    "ansible.builtin.assemble": _PATH_DEST,
    "ansible.builtin.file": _PATH,
    "ansible.builtin.stat": _PATH,
    "ansible.builtin.slurp": {"path": ("src", "path")},
    "ansible.builtin.fetch": {"path": ("src",)},
    "ansible.builtin.lineinfile": _PATH,
    "ansible.builtin.blockinfile": _PATH,
    "ansible.builtin.replace": _PATH,
    "ansible.builtin.find": {"path": ("paths", "path")},
    "ansible.builtin.get_url": {"path": ("dest",), "url": ("url",)},
    "ansible.builtin.unarchive": _PATH_DEST,
    "ansible.builtin.uri": {"url": ("url",)},
    "ansible.builtin.apt": _PACKAGE,
    "ansible.builtin.dnf": _PACKAGE,
    "ansible.builtin.yum": _PACKAGE,
    "ansible.builtin.package": _PACKAGE,
    "ansible.builtin.pip": {"package": ("name", "requirements")},
    "ansible.builtin.dpkg_selections": {"package": ("name",)},
    "ansible.builtin.apt_repository": {"repository": ("repo",)},
    "ansible.builtin.yum_repository": {"repository": ("name",)},
    "ansible.builtin.systemd_service": _SERVICE,
    "ansible.builtin.systemd": _SERVICE,
    "ansible.builtin.service": _SERVICE,
    "ansible.builtin.user": {"user": ("name",)},
    "ansible.builtin.group": {"group": ("name",)},
    "ansible.posix.sysctl": {"sysctl": ("name",)},
    "ansible.posix.mount": {"path": ("path",)},
    "community.general.modprobe": {"kernel_module": ("name",)},
    "community.general.yum_versionlock": {"package": ("name",)},
    "community.general.htpasswd": {"path": ("path", "dest"), "user": ("name", "username")},
    "community.docker.docker_container": {"container": ("name",), "image": ("image",)},
    "community.docker.docker_image": _IMAGE,
    "community.docker.docker_image_pull": _IMAGE,
    "community.docker.docker_image_push": _IMAGE,
    "community.docker.docker_image_tag": _IMAGE,
    "community.docker.docker_image_load": {"path": ("path",)},
    "community.docker.docker_login": {"registry": ("registry_url", "registry")},
    "community.docker.docker_network": {"network": ("name",)},
    "community.docker.docker_volume": {"volume": ("volume_name", "name")},
    "community.crypto.openssl_privatekey": {"path": ("path",)},
    "community.crypto.openssl_csr": {"path": ("path",)},
    "community.crypto.x509_certificate": {"path": ("path",)},
    "autoglm.fleet.model_fetch": {"path": ("dest",), "model": ("model_id",)},
    "autoglm.fleet.docker_daemon_config": {"path": ("path",)},
}

# Arguments kept per module: what names the target and how it is changed, never content, passwords, headers,
# request bodies, container environments, command lines or build arguments.
_FILE_ATTRS = ("owner", "group", "mode", "backup")
ALLOWED_ARGS = {
    # copy, template, assemble and unarchive receive the controller's file as a temporary path: not kept
    "ansible.builtin.copy": ("dest", "remote_src", "force", *_FILE_ATTRS),
    "ansible.builtin.template": ("dest", "force", *_FILE_ATTRS),
    "ansible.builtin.assemble": ("dest", "remote_src", *_FILE_ATTRS),
    "ansible.builtin.file": ("path", "dest", "name", "state", "src", "recurse", *_FILE_ATTRS),
    "ansible.builtin.stat": ("path", "get_checksum", "checksum_algorithm"),
    "ansible.builtin.slurp": ("src", "path"),
    "ansible.builtin.fetch": ("src", "dest", "flat"),
    "ansible.builtin.lineinfile": ("path", "dest", "name", "regexp", "state", "create", *_FILE_ATTRS),
    "ansible.builtin.blockinfile": ("path", "dest", "name", "marker", "state", "create", *_FILE_ATTRS),
    "ansible.builtin.replace": ("path", "regexp", *_FILE_ATTRS),
    "ansible.builtin.find": ("paths", "path", "patterns", "file_type", "recurse", "age", "size"),
    "ansible.builtin.get_url": ("url", "dest", "checksum", "force", *_FILE_ATTRS),
    "ansible.builtin.unarchive": ("dest", "remote_src", "creates", *_FILE_ATTRS),
    "ansible.builtin.uri": ("url", "method", "status_code", "follow_redirects", "validate_certs"),
    "ansible.builtin.apt": (
        "name",
        "pkg",
        "deb",
        "state",
        "update_cache",
        "cache_valid_time",
        "install_recommends",
        "default_release",
        "allow_downgrade",
        "autoremove",
        "purge",
        "upgrade",
    ),
    "ansible.builtin.dnf": ("name", "state", "enablerepo", "disablerepo", "update_cache", "allow_downgrade"),
    "ansible.builtin.yum": ("name", "state", "enablerepo", "disablerepo", "update_cache", "allow_downgrade"),
    "ansible.builtin.package": ("name", "state"),
    "ansible.builtin.pip": ("name", "state", "version", "virtualenv", "virtualenv_command", "requirements"),
    "ansible.builtin.dpkg_selections": ("name", "selection"),
    "ansible.builtin.apt_repository": ("repo", "state", "filename", "update_cache"),
    "ansible.builtin.yum_repository": ("name", "baseurl", "state", "enabled", "gpgcheck", "file"),
    "ansible.builtin.systemd_service": ("name", "unit", "state", "enabled", "masked", "daemon_reload", "scope"),
    "ansible.builtin.systemd": ("name", "unit", "state", "enabled", "masked", "daemon_reload", "scope"),
    "ansible.builtin.service": ("name", "state", "enabled"),
    "ansible.builtin.user": ("name", "state", "groups", "append", "shell", "home", "system", "uid", "create_home"),
    "ansible.builtin.group": ("name", "state", "gid", "system"),
    "ansible.builtin.command": ("chdir", "creates", "removes"),
    "ansible.builtin.shell": ("chdir", "creates", "removes", "executable"),
    "ansible.builtin.reboot": ("reboot_timeout",),
    "ansible.builtin.setup": ("gather_subset", "filter"),
    "ansible.posix.sysctl": ("name", "value", "state", "sysctl_file", "sysctl_set", "reload"),
    "ansible.posix.mount": ("path", "src", "fstype", "state", "opts"),
    "community.general.modprobe": ("name", "state", "persistent"),
    "community.general.yum_versionlock": ("name", "state"),
    "community.general.htpasswd": ("path", "dest", "name", "username", "state", "hash_scheme", *_FILE_ATTRS),
    "community.docker.docker_container": (
        "name",
        "image",
        "state",
        "restart_policy",
        "published_ports",
        "pull",
        "recreate",
        "restart",
        "read_only",
        "user",
        "network_mode",
        "security_opts",
        "stop_timeout",
    ),
    "community.docker.docker_image": ("name", "tag", "repository", "source", "state", "force_source", "push"),
    "community.docker.docker_image_pull": ("name", "tag", "platform", "pull"),
    "community.docker.docker_image_push": ("name", "tag"),
    "community.docker.docker_image_tag": ("name", "tag", "repository", "existing_images"),
    "community.docker.docker_image_load": ("path",),
    "community.docker.docker_login": ("registry_url", "registry", "username", "state", "reauthorize"),
    "community.docker.docker_network": ("name", "state", "driver"),
    "community.docker.docker_volume": ("volume_name", "name", "state", "driver"),
    "community.crypto.openssl_privatekey": ("path", "type", "curve", "size", *_FILE_ATTRS),
    "community.crypto.openssl_csr": ("path", "common_name", "subject_alt_name"),
    "community.crypto.openssl_csr_pipe": ("common_name", "subject_alt_name"),
    "community.crypto.x509_certificate": ("path", "provider", "force", *_FILE_ATTRS),
    "autoglm.fleet.model_fetch": ("dest", "model_id", "revision", "require_signature"),
    "autoglm.fleet.docker_daemon_config": ("path",),
}

_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def fqcn(action):
    """``copy`` and ``ansible.legacy.copy`` -> ``ansible.builtin.copy``; a collection's name stays."""
    if not action:
        return ""
    if action.startswith("ansible.legacy."):
        action = action[len("ansible.legacy.") :]
    if "." not in action:
        action = "ansible.builtin." + action
    return action


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scrub(value, url=False):
    """A value safe and small enough to log: credentials cut from URLs (and, for URL fields, the query too),
    long strings and lists shortened."""
    if isinstance(value, str):
        value = _URL_USERINFO.sub(r"\1", value)
        if url:
            value = value.split("#", 1)[0].split("?", 1)[0]
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "...(%d more)" % (len(value) - MAX_TEXT)
    if isinstance(value, (list, tuple)):
        items = [scrub(v, url) for v in value[:MAX_ITEMS]]
        return items + (["...(%d more)" % (len(value) - MAX_ITEMS)] if len(value) > MAX_ITEMS else [])
    if isinstance(value, dict):
        return {str(k): scrub(v, url) for k, v in list(value.items())[:MAX_ITEMS]}
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(str(value), url)


def allowed_args(action, args):
    """The task's arguments that ``ALLOWED_ARGS`` names for its module (none for a module not listed)."""
    keep = ALLOWED_ARGS.get(fqcn(action), ())
    return {
        k: scrub(args[k], url=k in ("url", "baseurl"))
        for k in keep
        if isinstance(args, dict) and args.get(k) is not None
    }


def resource(action, args, result=None):
    """What the task acted on, for known modules: {"path": ..., "package": ..., "image": ..., "image_id": ...}."""
    action = fqcn(action)
    out = {}
    if isinstance(args, dict):
        for field, names in RESOURCES.get(action, {}).items():
            for name in names:
                if args.get(name) not in (None, "", []):
                    out[field] = scrub(args[name], url=field == "url")
                    break
        if action in ("ansible.builtin.command", "ansible.builtin.shell"):
            command = _command_name(args)
            if command:
                out["command"] = command
    image = out.get("image")
    if isinstance(image, str) and "@sha256:" in image:
        out["digest"] = image.split("@", 1)[1]
    if isinstance(result, dict):
        out.update(_result_resource(action, result))
    return out or None


def _command_name(args):
    """The program a command task ran (its first word only: the rest of a command line may hold a secret)."""
    argv = args.get("argv")
    if isinstance(argv, list) and argv:
        word = str(argv[0])
    else:
        text = args.get("cmd") or args.get("_raw_params") or ""
        words = str(text).split()
        word = words[0] if words else ""
    if not word or "=" in word or "{{" in word:
        return None
    return scrub(word)


def _result_resource(action, result):
    """Resource facts only the result knows: the image id and digest a docker module reports."""
    out = {}
    if action == "community.docker.docker_container":
        container = result.get("container")
        if isinstance(container, dict) and isinstance(container.get("Image"), str):
            out["image_id"] = container["Image"]
    elif action.startswith("community.docker.docker_image"):
        image = result.get("image")
        if isinstance(image, dict):
            if isinstance(image.get("Id"), str):
                out["image_id"] = image["Id"]
            digests = image.get("RepoDigests")
            if isinstance(digests, list) and digests and isinstance(digests[0], str) and "@" in digests[0]:
                out["digest"] = digests[0].split("@", 1)[1]
    return out


def failure_message(result):
    """The failure's message (``msg``, and the first failed item's for a loop), shortened; None if there is none."""
    if not isinstance(result, dict):
        return None
    parts = []
    if result.get("msg"):
        parts.append(str(result["msg"]))
    for i, item in enumerate(result.get("results") or []):
        if isinstance(item, dict) and item.get("failed") and item.get("msg"):
            parts.append("item %d: %s" % (i, item["msg"]))
            break
    if not parts and result.get("stderr"):
        parts.append(str(result["stderr"]).strip().splitlines()[-1] if str(result["stderr"]).strip() else "")
    text = "; ".join(p for p in parts if p)
    return scrub(text) if text else None


class Run:
    """One playbook run's records, written through an ``_audit_chain.AuditLog``."""

    def __init__(self, log, user, controller, playbook, clock=now_rfc3339):
        self.log, self.user, self.controller, self.playbook = log, user, controller, playbook
        self.clock = clock
        self.run_id = uuid.uuid4().hex
        self.seq = 0
        self.counts = dict.fromkeys(RESULTS, 0)
        self.hard_failures = 0
        self.started = False
        self.ended = False

    def _write(self, kind, fields, sync=True):
        record = {
            "v": FORMAT_VERSION,
            "type": kind,
            "run_id": self.run_id,
            "seq": self.seq,
            "time": self.clock(),
            "user": self.user,
            "controller": self.controller,
        }
        record.update(fields)
        sealed = self.log.append(record, sync=sync)
        self.seq += 1
        return sealed

    def start(self, **fields):
        """``run_start``: the playbook and how it was run (check/diff mode, limit, tags; never extra vars)."""
        self.started = True
        return self._write("run_start", dict(fields, playbook=self.playbook))

    def task(
        self,
        *,
        host,
        action,
        result,
        task,
        play,
        duration=None,
        args=None,
        result_data=None,
        censored=False,
        ignored=False,
        items=None,
        **extra,
    ):
        """One task result on one host. ``args`` are the rendered module arguments and ``result_data`` the result
        dict (for the failure message and docker image ids); for a loop, ``items`` lists (args, item result) per
        item, an item's result with ``censored`` in it standing for a ``no_log`` item."""
        if result not in RESULTS:
            raise ValueError("result must be one of %s" % ", ".join(RESULTS))
        self.counts[result] += 1
        if result in ("failed", "unreachable") and not ignored:
            self.hard_failures += 1
        fields = {
            "playbook": self.playbook,
            "play": scrub(play),
            "task": scrub(task),
            "action": fqcn(action),
            "host": host,
            "result": result,
            "duration": None if duration is None else round(max(duration, 0.0), 3),
        }
        if censored:
            fields["censored"] = True
        elif items is not None:
            shown = [(a, r) for a, r in items if not (isinstance(r, dict) and r.get("censored"))]
            resources = []
            for a, r in shown:
                res = resource(action, a, r)
                if res is not None and res not in resources:
                    resources.append(res)
            fields["resource"] = (resources[0] if len(resources) == 1 else scrub(resources)) if resources else None
            fields["args"] = scrub([allowed_args(action, a) for a, _r in shown])
            fields["items"] = len(items)
            if len(shown) < len(items):
                fields["censored_items"] = len(items) - len(shown)
        else:
            fields["resource"] = resource(action, args, result_data)
            fields["args"] = allowed_args(action, args)
        if result in ("failed", "unreachable") and not censored:
            fields["msg"] = failure_message(result_data)
        if ignored:
            fields["ignored"] = True
        fields.update({k: scrub(v) for k, v in extra.items() if v is not None})
        # A task's results are synced together, before the next task starts (the callback calls log.sync()).
        return self._write("task", fields, sync=False)

    def end(self, stats=None, complete=True, **fields):
        """``run_end``: sealed with the number of this run's records before it, the per-result counts and the hosts'
        stats. ``complete`` is false when the run was interrupted (sealed at exit instead of at its end)."""
        self.ended = True
        body = {
            "count": self.seq,
            "complete": bool(complete),
            "results": dict(self.counts),
            "status": "interrupted" if not complete else "failed" if self.hard_failures else "ok",
            "playbook": self.playbook,
        }
        if stats is not None:
            body["stats"] = stats
        body.update(fields)
        return self._write("run_end", body)
