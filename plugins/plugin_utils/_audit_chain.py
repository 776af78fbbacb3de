# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit log's HMAC chain (private): canonical form, sealing, the append-only writer and the verifier.

Standard library only, on purpose: ``scripts/audit-verify`` imports this file to check a log on any machine
with Python 3, and the callback ``autoglm.fleet.audit`` writes through it on the controller.

A log is JSON lines. Every record carries ``prev`` (the previous line's MAC, ``GENESIS`` for the first line of
a file) and ``mac``, HMAC-SHA256 with the operator's key over the record's canonical form (the record without
``mac``, keys sorted, no spaces, ASCII). The line itself is the canonical form with ``mac`` added, so an edit
that keeps the JSON meaning (spaces, key order) is caught as well. A run opens with ``run_start`` (``seq`` 0)
and is sealed by ``run_end`` whose ``count`` is the number of the run's records before it; a log that ends
inside a run has been cut (or its run was killed).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import stat
import time

from ansible_collections.autoglm.fleet.plugins.module_utils._fsutil import fsync_dir

GENESIS = "0" * 64
FORMAT_VERSION = 1
RECORD_TYPES = ("run_start", "task", "run_end")
MIN_KEY_BYTES = 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

# audit-verify's exit codes, one per kind of finding (docs/audit.md)
OK = 0
EDITED = 1  # a record's MAC or canonical form does not match: edited, or forged and inserted
USAGE = 2  # bad arguments, unreadable log or key
CHAIN = 3  # a record does not follow the one before it: a line deleted, inserted (replayed) or moved
TRUNCATED = 4  # the log ends inside a run, with a partial line, or before a MAC recorded elsewhere
WRONG_KEY = 5  # no record verifies with this key


class AuditError(Exception):
    """The audit log or its key cannot be used; the message says what to do."""


def _dumps(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def normalize(record):
    """The record as it reads back from JSON (strings for odd types, no NaN), so the MAC covers what is written."""
    return json.loads(json.dumps(record, default=str, allow_nan=False))


def canonical(record):
    """The bytes the MAC covers: the record without ``mac``, keys sorted, no spaces, ASCII only."""
    return _dumps({k: v for k, v in record.items() if k != "mac"}).encode("ascii")


def compute_mac(key, record):
    return hmac.new(key, canonical(record), hashlib.sha256).hexdigest()


def seal(key, record, prev):
    """Return (line without newline, sealed record) for ``record`` chained after the MAC ``prev``."""
    sealed = normalize(dict(record, prev=prev))
    sealed.pop("mac", None)
    sealed["mac"] = compute_mac(key, sealed)
    return _dumps(sealed), sealed


# ---------------------------------------------------------------------------------------------------- keys
def load_key(path):
    """Read the HMAC key (the file's bytes, surrounding whitespace stripped). Returns (key, warning or None)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            key = f.read().strip()
    except OSError as exc:
        raise AuditError(
            "cannot read the audit key file %s (%s); create it with 'umask 077; head -c 32 /dev/urandom | base64 > %s' "
            "or point AUTOGLM_AUDIT_KEY_FILE / [callback_audit] key_file at it" % (path, exc.strerror, path)
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditError(
            "the audit key in %s has %d bytes; it needs at least %d (use 32 random bytes, base64: "
            "'head -c 32 /dev/urandom | base64')" % (path, len(key), MIN_KEY_BYTES)
        )
    warning = None
    if st.st_mode & 0o077:
        warning = (
            "the audit key file %s is readable by others (mode %04o): anyone who can read it can forge the log; "
            "chmod 600 it" % (path, stat.S_IMODE(st.st_mode))
        )
    return key, warning


def create_key(path):
    """Create a random key at ``path`` (0600, its directory 0700) unless it exists; True when created.

    The key is written to a temporary file and linked into place, so ``path`` never holds half a key and a
    concurrent creator cannot be overwritten."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if os.path.exists(path):
        return False
    tmp = "%s.%d.%s.tmp" % (path, os.getpid(), secrets.token_hex(4))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_dir(directory)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------------------------- writer
class RemoteCopy:
    """Sends each sealed line to a syslog collector over TCP (RFC 5424 message, RFC 6587 newline framing).

    ``target`` is ``host`` or ``host:port`` (default port 514). A failed send is retried once on a new
    connection; after that the line is counted as not copied, and for ``backoff`` seconds no line is tried (a
    collector that is down or unreachable must not stall the run). The local log stays authoritative."""

    def __init__(self, target, timeout=5.0, app_name="autoglm-audit", backoff=30.0, clock=time.monotonic):
        m = re.match(r"^\[([^\]]+)\](?::(\d+))?$", target) or re.match(r"^([^:\[\]]+)(?::(\d+))?$", target)
        if not m:
            raise AuditError("copy_to_host %r is not host, host:port or [v6 address]:port" % target)
        self.address = (m.group(1), int(m.group(2) or 514))
        self.target, self.timeout, self.app_name = target, timeout, app_name
        self.backoff, self.clock = backoff, clock
        self.hostname = socket.gethostname()
        self.sent = 0
        self.failed = 0
        self.attempts = 0
        self._down_until = None
        self.last_error = None
        self._sock = None

    def _frame(self, line):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # PRI 110 = facility 13 (log audit) * 8 + severity 6 (informational)
        return ("<110>1 %s %s %s %d - - %s\n" % (stamp, self.hostname, self.app_name, os.getpid(), line)).encode()

    def send(self, line):
        if self._down_until is not None and self.clock() < self._down_until:
            self.failed += 1
            return False
        data = self._frame(line)
        for _attempt in (1, 2):
            self.attempts += 1
            try:
                if self._sock is None:
                    self._sock = socket.create_connection(self.address, timeout=self.timeout)
                self._sock.sendall(data)
                self.sent += 1
                self._down_until = None
                return True
            except OSError as exc:
                self.last_error = "%s: %s" % (self.target, exc)
                self.close()
        self.failed += 1
        self._down_until = self.clock() + self.backoff
        return False

    def close(self):
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class AuditLog:
    """Appends sealed records to a log file: created 0600 (directory 0700), each line written whole under an
    exclusive lock, chained to the line that is really last in the file at that moment (so two runs writing at
    once still make one valid chain), and fsync'ed before the call returns, or with ``sync=False`` at the next
    ``sync()`` (a group commit: the callback syncs the results of a task once, before the next task starts)."""

    def __init__(self, path, key, copy=None):
        self.path, self.key, self.copy = path, key, copy
        self.warnings = []
        self._fd = None
        self._unsynced = False

    def open(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            try:
                os.makedirs(directory, mode=0o700)
            except OSError as exc:
                raise AuditError(
                    "cannot create the audit log's directory %s (%s)" % (directory, exc.strerror)
                ) from None
        existed = os.path.exists(self.path)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditError(
                "cannot open the audit log %s (%s); set AUTOGLM_AUDIT_LOG or [callback_audit] log to a writable path"
                % (self.path, exc.strerror)
            ) from None
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):
            self.close()
            raise AuditError("the audit log %s is not a regular file" % self.path)
        if stat.S_IMODE(st.st_mode) != 0o600:
            try:
                os.fchmod(self._fd, 0o600)
                self.warnings.append(
                    "the audit log %s had mode %04o; set it to 0600" % (self.path, stat.S_IMODE(st.st_mode))
                )
            except OSError as exc:
                self.warnings.append(
                    "the audit log %s has mode %04o and cannot be set to 0600 (%s)"
                    % (self.path, stat.S_IMODE(st.st_mode), exc.strerror)
                )
        if not existed:
            fsync_dir(directory)
        return self

    def close(self):
        if self._fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = None
        if self.copy is not None:
            self.copy.close()

    def sync(self):
        """fsync the lines appended with ``sync=False`` since the last sync (nothing to do when there are none)."""
        if self._fd is None or not self._unsynced:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise AuditError("cannot sync the audit log %s (%s)" % (self.path, exc.strerror)) from None
        self._unsynced = False

    def _tail(self):
        """(MAC of the file's last line or GENESIS, whether the file ends inside a line)."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return GENESIS, False
        partial = os.pread(self._fd, 1, size - 1) != b"\n"
        pos = size if partial else size - 1  # leave out the final newline
        buf = b""
        while pos > 0:
            start = max(0, pos - 65536)
            buf = os.pread(self._fd, pos - start, start) + buf
            pos = start
            if b"\n" in buf:
                break
        last = buf.rsplit(b"\n", 1)[-1]
        try:
            mac = json.loads(last)["mac"]
            if isinstance(mac, str) and _HEX64.match(mac):
                return mac, partial
        except (ValueError, KeyError, TypeError):
            pass
        self.warnings.append(
            "the last line of the audit log %s is not a sealed record (a crash or an edit); the chain restarts "
            "after it and audit-verify will name that line" % self.path
        )
        return GENESIS, partial

    def append(self, record, sync=True):
        """Seal ``record`` after the file's last line, append it, fsync (with ``sync=False``: leave the fsync to the
        next ``sync()``, ``append()`` or ``close()``); return the sealed record."""
        if self._fd is None:
            raise AuditError("the audit log is not open")
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            prev, partial = self._tail()
            line, sealed = seal(self.key, record, prev)
            data = (b"\n" if partial else b"") + line.encode("ascii") + b"\n"
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self._fd, view)
                except OSError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    raise AuditError("cannot write the audit log %s (%s)" % (self.path, exc.strerror)) from None
                view = view[n:]
            self._unsynced = True
            if sync:
                self.sync()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if self.copy is not None:
            self.copy.send(line)
        return sealed


# ---------------------------------------------------------------------------------------------------- verifier
class Finding:
    """The first problem in a log: its 1-based line number, exit code and a sentence."""

    def __init__(self, line, code, message):
        self.line, self.code, self.message = line, code, message

    def __repr__(self):
        return "Finding(line=%r, code=%r, message=%r)" % (self.line, self.code, self.message)


class Summary:
    def __init__(self):
        self.records = 0
        self.runs = 0
        self.mac_ok = 0
        self.last_mac = GENESIS
        self.finding = None


def _extract(raw):
    """The JSON object of a collector's line (what follows the syslog header): from its first '{'."""
    i = raw.find(b"{")
    return raw[i:] if i >= 0 else raw


def verify_lines(lines, key, extract=False, expect_last=None):
    """Check a log's lines (bytes, each with its newline) with ``key``; return a Summary whose ``finding`` is the
    first problem (None for an intact log). Reads every line, so a wrong key can be told from an edit."""
    s = Summary()
    prev = GENESIS
    open_runs = {}  # run_id -> [next seq, line of run_start, last line]
    seen_runs = set()
    first = None
    seen_expect = expect_last is None
    n = 0

    def note(line_no, code, message):
        nonlocal first
        if first is None:
            first = Finding(line_no, code, message)

    for n, raw in enumerate(lines, 1):
        complete = raw.endswith(b"\n")
        body = raw[:-1] if complete else raw
        if body.endswith(b"\r"):
            body = body[:-1]
        if extract:
            body = _extract(body)
        try:
            rec = json.loads(body)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            if not complete:
                note(
                    n,
                    TRUNCATED,
                    "line %d is an incomplete record (no newline at the end of the log): the log was cut" % n,
                )
            else:
                note(n, EDITED, "line %d is not a JSON record: edited or damaged" % n)
            prev = None
            continue
        s.records += 1
        mac = rec.get("mac")
        if not (isinstance(mac, str) and _HEX64.match(mac)):
            note(n, EDITED, "line %d has no valid MAC field: edited or forged" % n)
            prev = None
            continue
        mac_ok = hmac.compare_digest(compute_mac(key, rec), mac)
        s.mac_ok += mac_ok
        if not mac_ok:
            note(
                n,
                EDITED,
                "line %d: the MAC does not match its content: the line was edited, or forged and inserted" % n,
            )
        elif body != _dumps(rec).encode("ascii"):
            note(n, EDITED, "line %d: the MAC matches but the line is not in canonical form: it was rewritten" % n)
        elif not complete:
            note(n, TRUNCATED, "line %d has no newline at the end of the log: the log was cut" % n)
        if prev is not None and rec.get("prev") != prev:
            note(
                n,
                CHAIN,
                "line %d does not follow line %d (its prev is not that line's MAC): a line was deleted, "
                "inserted or moved before it" % (n, n - 1),
            )
        prev = mac
        s.last_mac = mac
        if expect_last is not None and mac == expect_last:
            seen_expect = True
        kind, run, seq = rec.get("type"), rec.get("run_id"), rec.get("seq")
        if (
            kind not in RECORD_TYPES
            or not isinstance(run, str)
            or not isinstance(seq, int)
            or rec.get("v") != FORMAT_VERSION
        ):
            note(n, EDITED, "line %d is not an audit record of format %d (type, run_id, seq, v)" % (n, FORMAT_VERSION))
            continue
        if kind == "run_start":
            if run in seen_runs or seq != 0:
                note(n, CHAIN, "line %d starts run %s again: a replayed line" % (n, run))
                continue
            seen_runs.add(run)
            open_runs[run] = [1, n, n]
            s.runs += 1
            continue
        state = open_runs.get(run)
        if state is None:
            why = "after its run_end" if run in seen_runs else "without its run_start before it"
            note(
                n,
                CHAIN,
                "line %d belongs to run %s %s: a line was moved, inserted or the run's start deleted" % (n, run, why),
            )
            continue
        if seq != state[0]:
            note(
                n,
                CHAIN,
                "line %d is record %d of run %s, expected record %d: a record of that run is missing or "
                "out of order" % (n, seq, run, state[0]),
            )
        state[0] = seq + 1
        state[2] = n
        if kind == "run_end":
            if rec.get("count") != seq:
                note(
                    n,
                    EDITED,
                    "line %d: run_end counts %r records, the run has %d before it" % (n, rec.get("count"), seq),
                )
            del open_runs[run]

    if n == 0:
        note(0, TRUNCATED, "the log is empty: a log the callback wrote starts with a run_start")
    for run, (_next, start, last) in sorted(open_runs.items(), key=lambda kv: kv[1][2]):
        note(
            last,
            TRUNCATED,
            "run %s (line %d) has no run_end after line %d: the log was cut there, or the run was "
            "killed before it could seal it" % (run, start, last),
        )
    if not seen_expect:
        note(
            n, TRUNCATED, "the MAC %s recorded elsewhere is not in the log: it was cut before that record" % expect_last
        )
    if s.records and s.mac_ok == 0:
        first = Finding(
            first.line if first else 1,
            WRONG_KEY,
            "no record verifies with this key (line %d fails first): wrong key file, or every line rewritten"
            % (first.line if first else 1),
        )
    s.finding = first
    return s


def verify_file(path, key, extract=False, expect_last=None):
    try:
        with open(path, "rb") as f:
            return verify_lines(f, key, extract=extract, expect_last=expect_last)
    except OSError as exc:
        raise AuditError("cannot read the audit log %s (%s)" % (path, exc.strerror)) from None
