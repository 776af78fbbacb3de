"""autoglm-fleet through real ansible-runner and ansible-playbook runs on local hosts: progress lines per host and
phase, the summary, the exit code of a failing host, the artifact directory; `status` of the controller as a bare
GPU host. The lab's own checks (a converged fleet's table, a failing lab host) are in tests/e2e/test_cli.py."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]

PLAYBOOK = """---
- name: Phase one (a test)
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
    - name: Fail on b
      ansible.builtin.fail:
        msg: boom on b
      when: inventory_hostname == 'b'
- name: Phase two
  hosts: all
  gather_facts: false
  tasks:
    - name: Change something
      ansible.builtin.command: "true"
"""


def fleet(*args: str, cwd: pathlib.Path = ROOT, timeout: int = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "cli"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run([sys.executable, "-m", "autoglm_fleet", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def project(tmp_path):
    """A checkout with a two-play site.yml and two local hosts, a and b (b fails in play one)."""
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "galaxy.yml").write_text("namespace: autoglm\nname: fleet\nversion: 0.0.1\n")
    (tmp_path / "playbooks" / "site.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts").write_text(
        "".join("%s ansible_connection=local ansible_python_interpreter=%s\n" % (h, sys.executable) for h in "ab"))
    return tmp_path


def artifact_dir(stdout: str) -> pathlib.Path:
    found = re.findall(r"^artifacts: (\S+)", stdout, re.MULTILINE)
    assert found, stdout
    return pathlib.Path(found[0])


def test_a_failing_host_exits_1_with_its_lines_summary_and_artifacts(project):
    result = fleet("up", "-i", str(project / "hosts"), "--project", str(project), cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^\s+\d+:\d\d  b\s+FAILED  Phase one / Fail on b: boom on b$", out, re.MULTILINE), out
    assert re.search(r"^\s+\d+:\d\d  a\s+Phase one\s+ok\s+ok=1 ", out, re.MULTILINE), out
    assert re.search(r"^\s+\d+:\d\d  a\s+Phase two\s+changed\s+ok=1\s+changed=1 ", out, re.MULTILINE), out
    assert re.search(r"^a\s+changed\s+2\s+1\s+0\s+0\s+1\s", out, re.MULTILINE), out
    assert re.search(r"^b\s+failed\s+1\s+0\s+1\s+0\s+0\s", out, re.MULTILINE), out
    assert "up FAILED: 2 host(s), failed: b; artifacts: " in out
    # Ansible's own output is not on the terminal: it is in the artifact directory, printed first and last.
    assert "PLAY RECAP" not in out and "TASK [" not in out
    art = artifact_dir(out)
    assert art.is_relative_to(project / ".cache" / "fleet-runs" / "artifacts")
    assert out.rstrip().endswith(str(art))
    assert "PLAY RECAP" in (art / "stdout").read_text()
    assert list((art / "job_events").glob("*.json"))
    summary = json.loads((art / "summary.json").read_text())
    assert summary["exit_code"] == 1 and summary["hosts"]["b"]["result"] == "failed"
    assert summary["hosts"]["a"]["changed"] == 1


def test_success_exits_0_and_extra_vars_limit_pass_through(project, tmp_path):
    arts = tmp_path / "runs"
    result = fleet("up", "-i", str(project / "hosts"), "--project", str(project), "-l", "a", "-e", "x=1",
                   "--skip-tags", "none", "--artifacts", str(arts), cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up succeeded: 1 host(s); artifacts: %s/artifacts/" % arts in result.stdout
    command = json.loads((artifact_dir(result.stdout) / "command").read_text())["command"]
    assert command[0] == "ansible-playbook"
    for flag, value in (("-e", "x=1"), ("--limit", "a"), ("--skip-tags", "none")):
        assert command[command.index(flag) + 1] == value, command
    # The next run in the same artifacts root gets none of those (ansible-runner reads a run's command line back
    # from its private data dir: each run has its own, removed after it).
    result = fleet("up", "-i", str(project / "hosts"), "--project", str(project), "--artifacts", str(arts), cwd=project)
    assert result.returncode == 1  # b fails again: no --limit a this time
    command = json.loads((artifact_dir(result.stdout) / "command").read_text())["command"]
    assert "--limit" not in command and "-e" not in command and "--skip-tags" not in command, command
    assert sorted(p.name for p in arts.iterdir()) == ["artifacts"]


def test_status_json_of_a_bare_gpu_host(tmp_path):
    """The table of a converged fleet is checked in the lab (tests/e2e/test_cli.py); here one bare host, as JSON."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[gpu_hosts]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % sys.executable)
    result = fleet("status", "-i", str(inventory), "--json", "--artifacts", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    assert [r["host"] for r in rows] == ["localhost"]
    assert rows[0]["reachable"] is True and rows[0]["groups"] == ["gpu_hosts"]
    assert rows[0]["driver"] is None and rows[0]["gpus"] == [] and rows[0]["ready"] is False
    assert list((tmp_path / "runs" / "artifacts").glob("*-status/job_events"))
