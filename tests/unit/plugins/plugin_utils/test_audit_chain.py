"""Unit tests for plugins/plugin_utils/_audit_chain.py: sealing, the append-only writer and the verifier, on real
files in tmp_path (and a real TCP collector on loopback for the remote copy)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import stat
import threading

import pytest
from ansible_collections.autoglm.fleet.plugins.plugin_utils import _audit_chain as ac
from ansible_collections.autoglm.fleet.plugins.plugin_utils._audit_trail import Run

KEY = b"k" * 32


def write_runs(path, runs=2, tasks=3, key=KEY):
    """A log of `runs` sealed runs with `tasks` task records each, written by the real writer."""
    log = ac.AuditLog(str(path), key).open()
    try:
        for r in range(runs):
            run = Run(log, "alice", "ctl", "/pb/site.yml")
            run.start(check=False)
            for t in range(tasks):
                run.task(
                    host="h%d" % t,
                    action="ansible.builtin.file",
                    result="changed",
                    task="t%d" % t,
                    play="p",
                    duration=0.5,
                    args={"path": "/etc/x%d" % r, "state": "directory"},
                )
            run.end(stats={})
    finally:
        log.close()
    return path


def lines(path):
    return path.read_bytes().splitlines(keepends=True)


def verify(path, key=KEY, **kw):
    return ac.verify_file(str(path), key, **kw)


# ------------------------------------------------------------------------------------------------ sealing
def test_seal_is_canonical_and_keyed():
    line, sealed = ac.seal(KEY, {"b": 1, "a": "é"}, ac.GENESIS)
    assert line == json.dumps(sealed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert line.startswith('{"a":"\\u00e9","b":1,"mac":"')
    assert sealed["prev"] == ac.GENESIS
    assert sealed["mac"] == ac.compute_mac(KEY, sealed)
    assert sealed["mac"] != ac.compute_mac(b"x" * 32, sealed)


def test_seal_normalizes_odd_values_so_the_mac_covers_what_is_written():
    _line, sealed = ac.seal(KEY, {"t": (1, 2), "o": ValueError("odd")}, ac.GENESIS)
    assert sealed["t"] == [1, 2]
    assert isinstance(sealed["o"], str)
    assert ac.compute_mac(KEY, json.loads(_line)) == sealed["mac"]


def test_nan_is_refused():
    with pytest.raises(ValueError):
        ac.seal(KEY, {"d": float("nan")}, ac.GENESIS)


# ------------------------------------------------------------------------------------------------ writer
def test_log_file_is_0600_in_a_0700_directory(tmp_path):
    path = write_runs(tmp_path / "new" / "audit.log", runs=1, tasks=1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_an_existing_log_with_wider_mode_is_narrowed_with_a_warning(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"")
    path.chmod(0o644)
    log = ac.AuditLog(str(path), KEY).open()
    log.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "had mode 0644" in log.warnings[0]


def test_each_run_chains_onto_the_file_and_verifies(tmp_path):
    path = write_runs(tmp_path / "audit.log", runs=3, tasks=2)
    recs = [json.loads(x) for x in lines(path)]
    assert [r["type"] for r in recs[:4]] == ["run_start", "task", "task", "run_end"]
    assert recs[0]["prev"] == ac.GENESIS
    assert all(b["prev"] == a["mac"] for a, b in itertools.pairwise(recs))
    assert recs[3]["count"] == 3 and recs[3]["seq"] == 3
    s = verify(path)
    assert s.finding is None
    assert (s.records, s.runs, s.last_mac) == (12, 3, recs[-1]["mac"])


def test_two_writers_at_once_make_one_valid_chain(tmp_path):
    """Two runs appending to the same log at the same time: the lock and the tail read keep the chain whole."""
    path = tmp_path / "audit.log"

    def writer():
        log = ac.AuditLog(str(path), KEY).open()
        run = Run(log, "u", "c", "/pb.yml")
        run.start()
        for i in range(40):
            run.task(host="h", action="ansible.builtin.stat", result="ok", task="t%d" % i, play="p")
        run.end()
        log.close()

    threads = [threading.Thread(target=writer) for _writer in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recs = [json.loads(x) for x in lines(path)]
    assert len(recs) == 84
    assert len({r["run_id"] for r in recs}) == 2
    assert verify(path).finding is None


def test_a_partial_last_line_is_left_visible_and_the_next_run_starts_on_a_new_line(tmp_path):
    path = write_runs(tmp_path / "audit.log", runs=1, tasks=1)
    with open(path, "ab") as f:
        f.write(b'{"half a rec')
    log = ac.AuditLog(str(path), KEY).open()
    run = Run(log, "u", "c", "/pb.yml")
    run.start()
    run.end()
    log.close()
    assert "not a sealed record" in log.warnings[0]
    raw = lines(path)
    assert raw[3] == b'{"half a rec\n'
    f = verify(path).finding
    assert (f.line, f.code) == (4, ac.EDITED)


# ------------------------------------------------------------------------------------------------ verifier
def tamper(path, edit):
    raw = lines(path)
    edit(raw)
    path.write_bytes(b"".join(raw))
    return verify(path)


def _edit_field(raw):
    rec = json.loads(raw[2])
    rec["result"] = "ok"
    raw[2] = (json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _respace(raw):
    raw[2] = (json.dumps(json.loads(raw[2]), sort_keys=True) + "\n").encode()


def _forge(raw):
    rec = json.loads(raw[2])
    rec["task"] = "forged"
    rec["mac"] = ac.compute_mac(b"not the key, 32 bytes long......", rec)
    raw.insert(3, (json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n").encode())


def _swap(raw):
    raw[2], raw[3] = raw[3], raw[2]


def _cut_run_end(raw):
    del raw[-1]


def _cut_mid_run(raw):
    del raw[7:]


CASES = [
    # (case, edit, first bad line, exit code)
    ("edited line", _edit_field, 3, ac.EDITED),
    ("whitespace rewritten", _respace, 3, ac.EDITED),
    ("deleted line", lambda raw: raw.pop(2), 3, ac.CHAIN),
    ("deleted first line", lambda raw: raw.pop(0), 1, ac.CHAIN),
    ("inserted forged line", _forge, 4, ac.EDITED),
    ("inserted replayed line", lambda raw: raw.insert(4, raw[2]), 5, ac.CHAIN),
    ("reordered lines", _swap, 3, ac.CHAIN),
    ("runs reordered", lambda raw: raw.__setitem__(slice(None), raw[5:] + raw[:5]), 1, ac.CHAIN),
    ("truncated tail: run_end cut", _cut_run_end, 9, ac.TRUNCATED),
    ("truncated tail: mid run", _cut_mid_run, 7, ac.TRUNCATED),
    ("truncated tail: partial line", lambda raw: raw.__setitem__(-1, raw[-1][:40]), 10, ac.TRUNCATED),
    ("truncated tail: newline cut", lambda raw: raw.__setitem__(-1, raw[-1][:-1]), 10, ac.TRUNCATED),
    ("garbage line", lambda raw: raw.insert(2, b"hello\n"), 3, ac.EDITED),
]


@pytest.mark.parametrize("case, edit, line, code", CASES, ids=[c[0] for c in CASES])
def test_each_tampering_names_its_first_bad_line(tmp_path, case, edit, line, code):
    path = write_runs(tmp_path / "audit.log", runs=2, tasks=3)  # 10 lines: runs at 1-5 and 6-10
    assert verify(path).finding is None
    finding = tamper(path, edit).finding
    assert finding is not None, case
    assert (finding.line, finding.code) == (line, code), finding.message
    assert ("line %d" % line) in finding.message


def test_wrong_key_is_told_apart_from_an_edit(tmp_path):
    path = write_runs(tmp_path / "audit.log")
    f = verify(path, key=b"w" * 32).finding
    assert (f.line, f.code) == (1, ac.WRONG_KEY)
    assert "wrong key" in f.message


def test_empty_log_fails(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"")
    assert verify(path).finding.code == ac.TRUNCATED


def test_expect_last_detects_a_cut_at_a_run_boundary(tmp_path):
    """Cutting whole runs off the end leaves a valid chain; a MAC noted elsewhere still catches it."""
    path = write_runs(tmp_path / "audit.log", runs=2, tasks=1)
    last = json.loads(lines(path)[-1])["mac"]
    first_run_end = json.loads(lines(path)[2])["mac"]
    assert verify(path, expect_last=last).finding is None
    assert verify(path, expect_last=first_run_end).finding is None  # the log grew after that MAC: fine
    path.write_bytes(b"".join(lines(path)[:3]))
    assert verify(path).finding is None
    f = verify(path, expect_last=last).finding
    assert f.code == ac.TRUNCATED and last in f.message


def test_a_run_killed_before_its_end_is_reported_even_when_later_runs_are_fine(tmp_path):
    path = tmp_path / "audit.log"
    log = ac.AuditLog(str(path), KEY).open()
    killed = Run(log, "u", "c", "/pb.yml")
    killed.start()
    killed.task(host="h", action="ansible.builtin.stat", result="ok", task="t", play="p")
    later = Run(log, "u", "c", "/pb.yml")
    later.start()
    later.end()
    log.close()
    f = verify(path).finding
    assert (f.line, f.code) == (2, ac.TRUNCATED)
    assert killed.run_id in f.message


def test_extract_reads_a_collectors_lines(tmp_path):
    path = write_runs(tmp_path / "audit.log", runs=1, tasks=2)
    copy = tmp_path / "collector.log"
    copy.write_bytes(b"".join(b"Dec  5 01:02:03 ctl autoglm-audit[42]: " + x for x in lines(path)))
    assert verify(copy).finding is not None
    assert verify(copy, extract=True).finding is None


# ------------------------------------------------------------------------------------------------ keys
def test_create_key_is_0600_random_and_never_overwrites(tmp_path):
    path = tmp_path / "keys" / "audit.key"
    assert ac.create_key(str(path)) is True
    first = path.read_bytes()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert ac.create_key(str(path)) is False
    assert path.read_bytes() == first
    assert os.listdir(path.parent) == ["audit.key"]
    key, warning = ac.load_key(str(path))
    assert len(key) >= 32 and warning is None


@pytest.mark.parametrize(
    "content, mode, error, warning",
    [
        (b"short\n", 0o600, "needs at least 16", None),
        (b"x" * 32 + b"\n", 0o644, None, "readable by others"),
        (None, None, "cannot read the audit key file", None),
    ],
)
def test_load_key_checks(tmp_path, content, mode, error, warning):
    path = tmp_path / "audit.key"
    if content is not None:
        path.write_bytes(content)
        path.chmod(mode)
    if error:
        with pytest.raises(ac.AuditError, match=error):
            ac.load_key(str(path))
    else:
        key, warned = ac.load_key(str(path))
        assert key == b"x" * 32
        assert warning in warned


# ------------------------------------------------------------------------------------------------ remote copy
class Collector:
    """A syslog collector on loopback: a real TCP server that keeps every line it receives."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.data = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            with conn:
                while chunk := conn.recv(65536):
                    self.data += chunk

    def close(self):
        self.sock.close()


def test_remote_copy_sends_every_sealed_line(tmp_path):
    collector = Collector()
    try:
        copy = ac.RemoteCopy("127.0.0.1:%d" % collector.port)
        log = ac.AuditLog(str(tmp_path / "audit.log"), KEY, copy=copy).open()
        run = Run(log, "u", "c", "/pb.yml")
        run.start()
        run.task(host="h", action="ansible.builtin.stat", result="ok", task="t", play="p")
        run.end()
        log.close()
        for _attempt in range(100):
            if collector.data.count(b"\n") == 3:
                break
            threading.Event().wait(0.02)
    finally:
        collector.close()
    received = collector.data.splitlines(keepends=True)
    assert all(x.startswith(b"<110>1 ") and b" autoglm-audit " in x for x in received)
    (tmp_path / "copy.log").write_bytes(collector.data)
    assert verify(tmp_path / "copy.log", extract=True).finding is None
    assert [ac._extract(x) for x in received] == lines(tmp_path / "audit.log")
    assert (copy.sent, copy.failed) == (3, 0)


def test_remote_copy_counts_what_it_could_not_send(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    copy = ac.RemoteCopy("127.0.0.1:%d" % port, timeout=1)
    log = ac.AuditLog(str(tmp_path / "audit.log"), KEY, copy=copy).open()
    Run(log, "u", "c", "/pb.yml").start()
    log.close()
    assert (copy.sent, copy.failed) == (0, 1)
    assert "127.0.0.1:%d" % port in copy.last_error
    assert verify(tmp_path / "audit.log").finding.code == ac.TRUNCATED  # the local log has it (run not ended)


def test_remote_copy_backs_off_after_a_failure_so_a_dead_collector_does_not_stall_the_run():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    now = [100.0]
    copy = ac.RemoteCopy("127.0.0.1:%d" % port, timeout=1, backoff=30, clock=lambda: now[0])
    assert copy.send("a") is False and copy.attempts == 2  # tried, retried once
    assert copy.send("b") is False and copy.attempts == 2  # within the back-off: not tried
    collector = Collector()
    try:
        copy.address = ("127.0.0.1", collector.port)
        now[0] += 31
        assert copy.send("c") is True and copy.attempts == 3
    finally:
        copy.close()
        collector.close()
    assert (copy.sent, copy.failed) == (1, 2)


@pytest.mark.parametrize(
    "target, address",
    [("logs", ("logs", 514)), ("logs:6514", ("logs", 6514)), ("[::1]:601", ("::1", 601)), ("[::1]", ("::1", 514))],
)
def test_remote_copy_targets(target, address):
    assert ac.RemoteCopy(target).address == address


@pytest.mark.parametrize("target", ["a:b:c", "logs:port", ""])
def test_remote_copy_bad_targets(target):
    with pytest.raises(ac.AuditError, match="copy_to_host"):
        ac.RemoteCopy(target)


@pytest.fixture
def fsyncs(monkeypatch):
    """The real os.fsync, with the size of the synced file recorded at each call."""
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(ac.os, "fsync", fsync)
    return calls


def test_appends_without_sync_are_synced_together_by_the_next_sync(tmp_path, fsyncs):
    path = tmp_path / "audit.log"
    log = ac.AuditLog(str(path), KEY).open()
    fsyncs.clear()  # creating the log syncs its directory
    for i in range(3):
        log.append({"type": "task", "i": i}, sync=False)
    assert fsyncs == []  # written (readers see them) but not yet synced
    assert len(lines(path)) == 3
    log.sync()
    assert fsyncs == [path.stat().st_size]
    log.sync()  # nothing new: no second fsync
    assert len(fsyncs) == 1
    log.append({"type": "task", "i": 3})  # sync=True (the default) syncs at once
    assert len(fsyncs) == 2
    log.append({"type": "task", "i": 4}, sync=False)
    log.close()  # close syncs what is pending
    assert fsyncs[-1] == path.stat().st_size and len(fsyncs) == 3
    recs = [json.loads(x) for x in lines(path)]
    assert [r["i"] for r in recs] == [0, 1, 2, 3, 4]
    assert recs[0]["prev"] == ac.GENESIS and all(b["prev"] == a["mac"] for a, b in itertools.pairwise(recs))


def test_a_runs_task_records_wait_for_a_sync_while_its_start_and_end_are_synced_as_written(tmp_path, fsyncs):
    path = tmp_path / "audit.log"
    log = ac.AuditLog(str(path), KEY).open()
    fsyncs.clear()
    run = Run(log, "alice", "ctl", "/pb/site.yml")
    run.start(check=False)
    assert len(fsyncs) == 1
    for t in range(3):
        run.task(host="h%d" % t, action="ansible.builtin.ping", result="ok", task="t", play="p")
    assert len(fsyncs) == 1
    run.end(stats={})  # run_end's fsync covers the task records before it
    assert fsyncs == [fsyncs[0], path.stat().st_size]
    log.close()
    assert len(fsyncs) == 2
    s = verify(path)
    assert s.finding is None and s.records == 5


def test_a_failed_sync_is_an_audit_error_naming_the_log(tmp_path, monkeypatch):
    path = tmp_path / "audit.log"
    log = ac.AuditLog(str(path), KEY).open()
    log.append({"type": "task"}, sync=False)

    def fail(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ac.os, "fsync", fail)
    with pytest.raises(ac.AuditError, match=r"cannot sync the audit log .*audit\.log \(Input/output error\)"):
        log.sync()
    monkeypatch.undo()
    log.close()
