"""The autoglm.fleet.audit callback in real ansible-playbook runs (two local hosts), checked with scripts/audit-verify.

- a run with a vaulted secret (a vault file made with ansible-vault): the secret never reaches the log or the
  collector's copy, the no_log task is recorded as censored, and the log and the copy verify;
- a run with a failing task: the failure and its message are recorded, and the run is still sealed;
- each kind of tampering with a real log, and a wrong key: audit-verify's exit code and the first bad line;
- enabled without a key: the run stops before its first task; interrupted: the run is sealed as incomplete.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
VERIFY = ROOT / "scripts" / "audit-verify"
SECRET = "vaulted-Secret-7f3a9c21e4"
ENABLE = "callbacks_enabled = autoglm.fleet.audit\n"

PLAYBOOK = textwrap.dedent(
    """\
    - name: Audited play
      hosts: all
      gather_facts: false
      vars_files: [vault.yml]
      tasks:
        - name: Make the output directory
          ansible.builtin.file:
            path: "{{ out }}/{{ inventory_hostname }}"
            state: directory
            mode: "0700"

        - name: Write the secret (no_log)
          ansible.builtin.copy:
            content: "{{ audit_test_secret }}"
            dest: "{{ out }}/{{ inventory_hostname }}/secret"
            mode: "0600"
          no_log: true

        - name: Write the secret again, without no_log (content is not on the allow-list)
          ansible.builtin.copy:
            content: "{{ audit_test_secret }}\\n"
            dest: "{{ out }}/{{ inventory_hostname }}/secret2"
            mode: "0600"

        - name: A command line that holds the secret
          ansible.builtin.command:
            argv: [test, -n, "{{ audit_test_secret }}"]
          changed_when: false

        - name: Stat both files
          ansible.builtin.stat:
            path: "{{ out }}/{{ inventory_hostname }}/{{ item }}"
          loop: [secret, secret2]

        - name: A no_log task that fails with the secret in its message, ignored
          ansible.builtin.fail:
            msg: "bad {{ audit_test_secret }}"
          no_log: true
          ignore_errors: true

        - name: Skipped on the second host
          ansible.builtin.stat:
            path: /etc/hostname
          when: inventory_hostname == 'h1'
    """
)

FAILING = textwrap.dedent(
    """\
    - name: A play where one host fails
      hosts: all
      gather_facts: false
      tasks:
        - name: Fail on h2
          ansible.builtin.command: /bin/sh -c 'echo no such thing >&2; exit 3'
          when: inventory_hostname == 'h2'
          changed_when: false

        - name: Only h1 gets here
          ansible.builtin.stat:
            path: /etc/hostname
    """
)


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """Two local hosts, a vault file and its password file, a key and a log path, in tmp_path."""
    (tmp_path / "inventory").write_text(
        "h1 ansible_connection=local\nh2 ansible_connection=local\n[all:vars]\nout=%s\n" % (tmp_path / "out")
    )
    (tmp_path / "vault-pass").write_text("a vault password\n")
    vault = tmp_path / "vault.yml"
    vault.write_text("audit_test_secret: %s\n" % SECRET)
    subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(tmp_path / "vault-pass"),
            str(vault),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    assert SECRET not in vault.read_text() and vault.read_text().startswith("$ANSIBLE_VAULT;")
    key = tmp_path / "audit.key"
    key.write_text("k" * 44 + "\n")
    key.chmod(0o600)
    log = tmp_path / "logs" / "audit.log"
    monkeypatch.setenv("AUTOGLM_AUDIT_LOG", str(log))
    monkeypatch.setenv("AUTOGLM_AUDIT_KEY_FILE", str(key))
    monkeypatch.delenv("AUTOGLM_AUDIT_COPY_TO_HOST", raising=False)
    monkeypatch.delenv("AUTOGLM_AUDIT_KEY_CREATE", raising=False)
    return {"dir": tmp_path, "log": log, "key": key, "inventory": tmp_path / "inventory"}


def run_playbook(ansible_playbook, lab, text, *args, name="site.yml", config=ENABLE):
    pb = lab["dir"] / name
    pb.write_text(text)
    return ansible_playbook(pb, "-i", str(lab["inventory"]), *args, config=config)


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def audit_verify(log, key, *args):
    return subprocess.run(
        [sys.executable, str(VERIFY), str(log), "--key-file", str(key), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


class Collector:
    """A syslog collector on loopback: a real TCP server keeping what it receives."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.data = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            with conn:
                while chunk := conn.recv(65536):
                    self.data += chunk


def test_a_vaulted_secret_never_reaches_the_log_or_its_copy(ansible_playbook, lab, monkeypatch):
    collector = Collector()
    monkeypatch.setenv("AUTOGLM_AUDIT_COPY_TO_HOST", "127.0.0.1:%d" % collector.port)
    proc = run_playbook(ansible_playbook, lab, PLAYBOOK, "--vault-password-file", str(lab["dir"] / "vault-pass"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (lab["dir"] / "out" / "h1" / "secret").read_text() == SECRET  # the secret was really used

    text = lab["log"].read_text()
    assert SECRET not in text
    assert stat.S_IMODE(os.stat(lab["log"]).st_mode) == 0o600
    recs = records(lab["log"])
    start, tasks, end = recs[0], recs[1:-1], recs[-1]
    assert start["type"] == "run_start" and start["playbook"] == str(lab["dir"] / "site.yml")
    assert start["check"] is False and "extra_vars" not in start
    # 7 tasks on 2 hosts
    assert len(tasks) == 14 and end["type"] == "run_end" and end["count"] == 15 and end["complete"] is True
    by = {(r["task"], r["host"]): r for r in tasks}

    assert by["Make the output directory", "h1"]["resource"] == {"path": str(lab["dir"] / "out" / "h1")}
    assert by["Make the output directory", "h1"]["result"] == "changed"
    nolog = by["Write the secret (no_log)", "h2"]
    assert nolog["censored"] is True and nolog["result"] == "changed" and "args" not in nolog
    plain = by["Write the secret again, without no_log (content is not on the allow-list)", "h1"]
    assert plain["resource"] == {"path": str(lab["dir"] / "out" / "h1" / "secret2")}
    assert plain["args"] == {
        "dest": str(lab["dir"] / "out" / "h1" / "secret2"),
        "mode": "0600",
        "force": True,
        "backup": False,
        "remote_src": False,
    }
    assert by["A command line that holds the secret", "h1"]["resource"] == {"command": "test"}
    loop = by["Stat both files", "h2"]
    assert loop["items"] == 2 and [r["path"] for r in loop["resource"]] == [
        str(lab["dir"] / "out" / "h2" / "secret"),
        str(lab["dir"] / "out" / "h2" / "secret2"),
    ]
    failed = by["A no_log task that fails with the secret in its message, ignored", "h1"]
    assert (failed["result"], failed["ignored"], failed["censored"]) == ("failed", True, True)
    assert "msg" not in failed
    assert by["Skipped on the second host", "h2"]["result"] == "skipped"
    assert by["Skipped on the second host", "h1"]["result"] == "ok"
    for r in tasks:
        assert r["duration"] >= 0 and r["user"] and r["controller"] and r["run_id"] == start["run_id"]
        assert r["play"] == "Audited play" and r["action"].startswith("ansible.builtin.")
    assert end["status"] == "ok" and end["stats"]["h1"]["ignored"] == 1
    assert end["copy"] == {"to": "127.0.0.1:%d" % collector.port, "sent": 15, "failed": 0}

    ok = audit_verify(lab["log"], lab["key"])
    assert ok.returncode == 0, ok.stderr
    assert "16 records in 1 sealed runs" in ok.stdout

    for _attempt in range(100):
        if collector.data.count(b"\n") == 16:
            break
        time.sleep(0.05)
    assert SECRET.encode() not in collector.data
    copy = lab["dir"] / "collector.log"
    copy.write_bytes(collector.data)
    assert audit_verify(copy, lab["key"], "--extract").returncode == 0


def test_a_failing_task_is_recorded_and_the_run_still_sealed(ansible_playbook, lab):
    proc = run_playbook(ansible_playbook, lab, FAILING)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    recs = records(lab["log"])
    fail = next(r for r in recs if r.get("host") == "h2" and r.get("task") == "Fail on h2")
    assert fail["result"] == "failed" and "ignored" not in fail
    assert fail["msg"] == "non-zero return code"
    assert fail["resource"] == {"command": "/bin/sh"}
    assert not any(r.get("host") == "h2" and r.get("task") == "Only h1 gets here" for r in recs)
    end = recs[-1]
    assert (end["type"], end["complete"], end["status"]) == ("run_end", True, "failed")
    assert end["stats"]["h2"]["failures"] == 1 and end["results"]["failed"] == 1
    assert audit_verify(lab["log"], lab["key"]).returncode == 0


def test_runs_append_to_one_chain(ansible_playbook, lab):
    for _run in range(2):
        run_playbook(ansible_playbook, lab, FAILING)
    recs = records(lab["log"])
    assert [r["type"] for r in recs].count("run_start") == 2
    assert len({r["run_id"] for r in recs}) == 2
    assert all(b["prev"] == a["mac"] for a, b in itertools.pairwise(recs))
    assert audit_verify(lab["log"], lab["key"]).returncode == 0


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The bytes of a log of two real runs of FAILING (lines 1-5 and 6-10: run_start, three results, run_end) and
    its key; made once for the tampering tests."""
    d = tmp_path_factory.mktemp("two-runs")
    (d / "inventory").write_text("h1 ansible_connection=local\nh2 ansible_connection=local\n")
    (d / "site.yml").write_text(FAILING)
    (d / "ansible.cfg").write_text("[defaults]\ncollections_path = %s\n%s" % (ROOT / ".cache" / "collections", ENABLE))
    key = d / "audit.key"
    key.write_text("k" * 44 + "\n")
    key.chmod(0o600)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(d / "ansible.cfg"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        AUTOGLM_AUDIT_LOG=str(d / "audit.log"),
        AUTOGLM_AUDIT_KEY_FILE=str(key),
    )
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    for _run in range(2):
        proc = subprocess.run(
            [exe, "-i", str(d / "inventory"), str(d / "site.yml")],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
    data = (d / "audit.log").read_bytes()
    raw = data.splitlines(keepends=True)
    assert len(raw) == 10 and json.loads(raw[5])["type"] == "run_start"
    return data, key


@pytest.fixture
def real_log(two_runs, tmp_path):
    data, key = two_runs
    log = tmp_path / "audit.log"
    log.write_bytes(data)
    return {"log": log, "key": key}, data.splitlines(keepends=True)


def _edit(raw):
    rec = json.loads(raw[2])
    rec["result"] = "ok"
    raw[2] = (json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n").encode()


TAMPER = [
    # (case, edit of the lines, first bad line, exit code)
    ("edited line", _edit, 3, 1),
    ("deleted line", lambda raw: raw.pop(3), 4, 3),
    ("inserted line", lambda raw: raw.insert(7, raw[2]), 8, 3),
    ("reordered lines", lambda raw: raw.insert(2, raw.pop(3)), 3, 3),
    ("truncated tail", lambda raw: raw.__delitem__(slice(8, None)), 8, 4),
    ("truncated mid-line", lambda raw: raw.__setitem__(-1, raw[-1][:100]), 10, 4),
]


@pytest.mark.parametrize("case, edit, line, code", TAMPER, ids=[t[0] for t in TAMPER])
def test_audit_verify_names_the_first_bad_line(real_log, case, edit, line, code):
    lab, raw = real_log
    edit(raw)
    lab["log"].write_bytes(b"".join(raw))
    proc = audit_verify(lab["log"], lab["key"])
    assert proc.returncode == code, proc.stderr
    assert "line %d" % line in proc.stderr, proc.stderr
    assert proc.stderr.startswith("audit-verify: FAILED: ")


def test_audit_verify_with_a_wrong_key(real_log, tmp_path):
    lab, _raw = real_log
    wrong = tmp_path / "wrong.key"
    wrong.write_text("w" * 44)
    wrong.chmod(0o600)
    proc = audit_verify(lab["log"], wrong)
    assert proc.returncode == 5
    assert "wrong key" in proc.stderr and "line 1" in proc.stderr


def test_audit_verify_usage_errors(real_log, tmp_path):
    lab, _raw = real_log
    assert audit_verify(lab["log"], tmp_path / "missing.key").returncode == 2
    assert audit_verify(tmp_path / "missing.log", lab["key"]).returncode == 2
    proc = subprocess.run(
        [sys.executable, str(VERIFY), str(lab["log"])],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "AUTOGLM_AUDIT_KEY_FILE"},
        check=False,
    )
    assert proc.returncode == 2 and "--key-file is required" in proc.stderr


def test_enabled_without_a_key_the_run_stops_before_any_task(ansible_playbook, lab, monkeypatch):
    monkeypatch.setenv("AUTOGLM_AUDIT_KEY_FILE", str(lab["dir"] / "no-such.key"))
    proc = run_playbook(ansible_playbook, lab, PLAYBOOK, "--vault-password-file", str(lab["dir"] / "vault-pass"))
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "autoglm.fleet.audit: cannot read the audit key file" in proc.stderr
    assert "No task has run" in proc.stderr
    assert not (lab["dir"] / "out").exists()
    assert not lab["log"].exists()


def test_ini_settings_resolve_next_to_ansible_cfg_and_key_create_makes_a_0600_key(ansible_playbook, lab, monkeypatch):
    monkeypatch.delenv("AUTOGLM_AUDIT_LOG")
    monkeypatch.delenv("AUTOGLM_AUDIT_KEY_FILE")
    config = ENABLE + "[callback_audit]\nlog = audit/audit.log\nkey_file = audit/audit.key\nkey_create = true\n"
    proc = run_playbook(ansible_playbook, lab, FAILING, config=config)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    key, log = lab["dir"] / "audit" / "audit.key", lab["dir"] / "audit" / "audit.log"
    assert "created the audit key %s (0600)" % key in proc.stdout
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key.parent).st_mode) == 0o700
    assert audit_verify(log, key).returncode == 0
    first = key.read_bytes()
    run_playbook(ansible_playbook, lab, FAILING, config=config)
    assert key.read_bytes() == first  # never replaced
    assert audit_verify(log, key).returncode == 0


def test_an_interrupted_run_is_sealed_as_incomplete(lab, tmp_path):
    """Ctrl-C during a task: ansible-playbook exits 99 and the run is sealed at exit (complete false)."""
    pb = tmp_path / "slow.yml"
    pb.write_text(
        "- hosts: h1\n  gather_facts: false\n  tasks:\n    - name: Wait\n      ansible.builtin.command: sleep 60\n"
    )
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\ncollections_path = %s\n%s" % (ROOT / ".cache" / "collections", ENABLE))
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.Popen(
        [exe, "-i", str(lab["inventory"]), str(pb)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lab["log"].exists() and lab["log"].read_text().count("\n") >= 1):
            time.sleep(0.2)
        time.sleep(3)  # run_start is written as the playbook starts; give the task time to start
        proc.send_signal(signal.SIGINT)
        out, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 99, out
    recs = records(lab["log"])
    assert [r["type"] for r in recs] == ["run_start", "run_end"]
    assert (recs[-1]["complete"], recs[-1]["status"]) == (False, "interrupted")
    assert audit_verify(lab["log"], lab["key"]).returncode == 0
