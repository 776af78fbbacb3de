# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: audit
type: notification
short_description: A tamper-evident audit trail of every playbook run, one HMAC-chained JSON line per task result
description:
  - Appends one JSON line per task result per host to O(log) - time (UTC, RFC 3339), run id, controller user and
    host, playbook, play, task, action, target host, the resource for known modules (path, package, service, image
    and its digest, container, sysctl key...), result (V(ok), V(changed), V(failed), V(skipped), V(unreachable)),
    duration, and the message on failure.
  - Arguments are recorded only through a per-module allow-list (never contents, passwords, headers, bodies,
    environments or command lines), and never for a C(no_log) task, which is recorded as C(censored).
  - Each line carries the previous line's MAC (C(prev)) and its own HMAC-SHA256 (C(mac)) over its canonical form,
    keyed with the contents of O(key_file). A C(run_start) record opens each playbook run and a sealed C(run_end)
    (the run's record count and results) closes it, so a cut tail is detectable. C(scripts/audit-verify) checks a
    log; see C(docs/audit.md).
  - The file is created 0600 (its directory 0700); each line is appended whole under an exclusive lock. Each
    task's results are fsync'ed together before the run goes on to the next task (a failed or unreachable result at
    once); C(run_start) and C(run_end) are fsync'ed as they are written. With O(copy_to_host), each line also goes
    to a syslog collector over TCP.
  - When the plugin is enabled but cannot work (no key, an unwritable log), C(ansible-playbook) stops with exit code
    5 before the first task; an audited fleet runs audited or not at all.
  - This plugin does not replace the stdout callback. Enable it with C(callbacks_enabled) in C(ansible.cfg) or
    E(ANSIBLE_CALLBACKS_ENABLED). Ad-hoc C(ansible) commands are recorded only with C(bin_ansible_callbacks).
author: autoglm.fleet maintainers (@autoglm)
version_added: 0.1.0
requirements:
  - enabled in callbacks_enabled (ansible.cfg [defaults]) or ANSIBLE_CALLBACKS_ENABLED
options:
  log:
    description:
      - Path of the audit log on the controller. Its directory is created (0700) when missing.
    type: path
    default: ~/.ansible/autoglm-audit.log
    env:
      - name: AUTOGLM_AUDIT_LOG
    ini:
      - section: callback_audit
        key: log
  key_file:
    description:
      - File holding the HMAC key (its bytes, surrounding whitespace stripped; at least 16, use 32 random bytes).
      - Keep it 0600 and off the machines whose runs it proves; the plugin warns when others can read it.
      - Required. Without it (and without O(key_create)) the run stops before its first task.
    type: path
    env:
      - name: AUTOGLM_AUDIT_KEY_FILE
    ini:
      - section: callback_audit
        key: key_file
  key_create:
    description:
      - Create O(key_file) (random, 0600, directory 0700) when it does not exist. For a lab; on a real fleet the key
        comes from your secret store and this stays false.
    type: bool
    default: false
    env:
      - name: AUTOGLM_AUDIT_KEY_CREATE
    ini:
      - section: callback_audit
        key: key_create
  copy_to_host:
    description:
      - Also send every line, as it is written, to this syslog collector (V(host), V(host:port) or V([v6]:port); TCP,
        default port 514; RFC 5424 messages with app name C(autoglm-audit), one per line).
      - A line that cannot be sent is retried once, then counted, and no line is tried for 30 seconds after that;
        C(run_end) records how many were sent and how many failed. The local log is authoritative; the copy keeps a
        cut or deleted local log detectable.
    type: str
    default: ""
    env:
      - name: AUTOGLM_AUDIT_COPY_TO_HOST
    ini:
      - section: callback_audit
        key: copy_to_host
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = autoglm.fleet.audit
#
# [callback_audit]
# log = /var/log/autoglm/audit.log
# key_file = /etc/autoglm/audit.key
# copy_to_host = logs.example.com:514

# or for one run:
#   AUTOGLM_AUDIT_KEY_FILE=/etc/autoglm/audit.key ANSIBLE_CALLBACKS_ENABLED=autoglm.fleet.audit \
#     ansible-playbook -i inventories/prod site.yml
# then check the log:
#   scripts/audit-verify ~/.ansible/autoglm-audit.log --key-file /etc/autoglm/audit.key
"""

import atexit
import getpass
import os
import socket
import time

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.utils.display import Display
from ansible_collections.autoglm.fleet.plugins.plugin_utils._audit_chain import (
    AuditError,
    AuditLog,
    RemoteCopy,
    create_key,
    load_key,
)
from ansible_collections.autoglm.fleet.plugins.plugin_utils._audit_trail import Run

display = Display()

# ansible-playbook's exit code for bad or incomplete options
EXIT_BAD_OPTIONS = 5


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "autoglm.fleet.audit"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._log = None
        self._run = None
        self._play = ""
        self._started = {}
        self._user = _controller_user()
        self._controller = socket.gethostname()
        self._pid = os.getpid()
        atexit.register(self._seal_at_exit)

    # -------------------------------------------------------------------------------------------- set-up
    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        try:
            self._log = self._open(
                self.get_option("log"),
                self.get_option("key_file"),
                self.get_option("key_create"),
                self.get_option("copy_to_host"),
            )
        except AuditError as exc:
            # Fail closed: ansible-playbook turns any exception here into a warning and runs unaudited.
            self._display.error("autoglm.fleet.audit: %s. No task has run." % exc)
            raise SystemExit(EXIT_BAD_OPTIONS) from None
        for warning in self._log.warnings:
            self._display.warning("autoglm.fleet.audit: %s" % warning)
        del self._log.warnings[:]

    def _open(self, log, key_file, key_create, copy_to_host):
        if not key_file:
            raise AuditError("no key file: set AUTOGLM_AUDIT_KEY_FILE or key_file in [callback_audit] of ansible.cfg")
        if key_create and create_key(key_file):
            self._display.display("autoglm.fleet.audit: created the audit key %s (0600)" % key_file)
        key, warning = load_key(key_file)
        if warning:
            self._display.warning("autoglm.fleet.audit: %s" % warning)
        copy = RemoteCopy(copy_to_host) if copy_to_host else None
        return AuditLog(log, key, copy=copy).open()

    # -------------------------------------------------------------------------------------------- runs
    def v2_playbook_on_start(self, playbook):
        self._seal(None, complete=False, reason="another playbook started before this one's stats")
        path = os.path.abspath(playbook._file_name) if getattr(playbook, "_file_name", None) else ""
        self._run = Run(self._log, self._user, self._controller, path)
        self._write(self._run.start, **_cli_summary())

    def v2_playbook_on_play_start(self, play):
        self._sync()
        self._play = play.get_name()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._sync()

    def v2_playbook_on_handler_task_start(self, task):
        self._sync()

    def _sync(self):
        """fsync the records of the task before this one: a task's results are synced together, before the run goes
        on to the next task (one fsync per task instead of one per host)."""
        if self._run is not None and not self._run.ended:
            self._write(self._log.sync)

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for host in sorted(stats.processed):
            s = stats.summarize(host)
            hosts[host] = {
                k: s.get(k, 0) for k in ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")
            }
        self._seal(hosts, complete=True)

    def _seal(self, stats, complete, reason=None):
        if self._run is None or self._run.ended:
            return
        extra = {}
        if reason:
            extra["reason"] = reason
        copy = self._log.copy
        if copy is not None:
            extra["copy"] = {"to": copy.target, "sent": copy.sent, "failed": copy.failed}
            if copy.failed:
                self._display.warning(
                    "autoglm.fleet.audit: %d line(s) were not copied to %s (%s)"
                    % (copy.failed, copy.target, copy.last_error)
                )
        self._write(self._run.end, stats=stats, complete=complete, **extra)

    def _seal_at_exit(self):
        """An interrupted run (Ctrl-C, an error that ended ansible-playbook) is sealed as incomplete at exit."""
        if os.getpid() != self._pid:  # a forked worker never writes the log
            return
        try:
            self._seal(None, complete=False, reason="ansible-playbook ended before the run's stats")
        finally:
            if self._log is not None:
                self._log.close()

    def _write(self, method, *args, **kwargs):
        try:
            method(*args, **kwargs)
        except (AuditError, OSError) as exc:
            self._display.error("autoglm.fleet.audit: cannot write the audit log: %s" % exc)
            raise SystemExit(EXIT_BAD_OPTIONS) from None
        for warning in self._log.warnings:
            self._display.warning("autoglm.fleet.audit: %s" % warning)
        del self._log.warnings[:]

    # -------------------------------------------------------------------------------------------- results
    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.monotonic()

    def v2_runner_on_ok(self, result):
        self._record(result, "changed" if result.is_changed() else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed", ignored=ignore_errors)
        self._sync()  # a failure is on disk at once, whatever happens to the run next

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")
        self._sync()

    def _record(self, result, status, ignored=False):
        if self._run is None:
            return
        task, host = result.task, result.host.get_name()
        data = result.result
        started = self._started.pop((host, task._uuid), None)
        censored = task.no_log is True or bool(data.get("censored"))
        items = None
        if isinstance(data.get("results"), list) and (task.loop is not None or task.loop_with):
            items = [(_module_args(r), r) for r in data["results"] if isinstance(r, dict)]
        delegated = (data.get("_ansible_delegated_vars") or {}).get("ansible_host")
        self._write(
            self._run.task,
            host=host,
            action=task.resolved_action or task.action,
            result=status,
            task=result.task_name,
            play=self._play,
            duration=None if started is None else time.monotonic() - started,
            args=_module_args(data, result.task_fields.get("args")),
            result_data=data,
            censored=censored,
            ignored=ignored,
            items=items,
            task_path=task.get_path() or None,
            handler=True if _is_handler(task) else None,
            delegated_to=delegated if delegated and task.delegate_to else None,
        )


def _module_args(data, fallback=None):
    """The module's arguments as it received them (rendered, no_log values masked), else the task's."""
    invocation = data.get("invocation") if isinstance(data, dict) else None
    if isinstance(invocation, dict) and isinstance(invocation.get("module_args"), dict):
        return invocation["module_args"]
    return fallback if isinstance(fallback, dict) else {}


def _is_handler(task):
    from ansible.playbook.handler import Handler

    return isinstance(task, Handler)


def _controller_user():
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _cli_summary():
    """How the run was started, without anything that may hold a secret (no extra vars, no passwords)."""
    args = context.CLIARGS
    out = {
        "check": bool(args.get("check", False)),
        "diff": bool(args.get("diff", False)),
        "limit": args.get("subset") or None,
        "tags": list(args.get("tags") or []) or None,
        "skip_tags": list(args.get("skip_tags") or []) or None,
        "inventory": [os.path.abspath(i) if os.path.exists(i) else i for i in (args.get("inventory") or [])] or None,
        "cwd": os.getcwd(),
    }
    try:
        from ansible.release import __version__ as ansible_version

        out["ansible_version"] = ansible_version
    except ImportError:
        pass
    return {k: v for k, v in out.items() if v is not None}
