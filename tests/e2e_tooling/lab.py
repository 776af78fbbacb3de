"""The e2e lab as the rollout tests see it: its inventory, commands inside its hosts, their records, playbook runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".cache" / "e2e"
DEFAULT_ROOT = "/opt/autoglm"
CONTAINER = "autoglm-model-server"


class Lab:
    def __init__(self, inventory=None):
        self.inventory = inventory or os.environ.get("E2E_INVENTORY", "tests/e2e")
        out = subprocess.run([str(ROOT / ".venv/bin/ansible-inventory"), "-i", self.inventory, "--list"],
                             cwd=ROOT, check=True, capture_output=True, text=True, env=self.env())
        self.inv = json.loads(out.stdout)
        # Rollout order: the canary hosts first, then the others (site.yml's rollout play, order: inventory). A group's
        # "hosts" in ansible-inventory --list are its direct members only: canary is a child group of gpu_hosts.
        canary = self.members("canary")
        gpu = self.members("gpu_hosts")
        self.canary = [h for h in canary if h in gpu]
        self.gpu_hosts = self.canary + sorted(h for h in gpu if h not in self.canary)
        self.build_host = self.inv["model_build"]["hosts"][0]
        self.api_key = (ROOT / ".cache" / "lab-secrets" / "api-key").read_text().strip()

    def members(self, group):
        """Every host of a group, its child groups' included."""
        entry = self.inv.get(group, {})
        hosts = list(entry.get("hosts", []))
        for child in entry.get("children", []):
            hosts += [h for h in self.members(child) if h not in hosts]
        return hosts

    @staticmethod
    def env(**extra):
        return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **extra}

    def var(self, host, name, default=None):
        value = self.inv["_meta"]["hostvars"][host].get(name, default)
        return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value

    def address(self, host):
        return self.var(host, "lab_address")

    def root(self, host):
        return self.var(host, "runtime_root", DEFAULT_ROOT)

    def sh(self, host, *argv, check=True):
        return subprocess.run(["docker", "exec", host, *argv], check=check, capture_output=True, text=True)

    def state(self, host, name="model_serve"):
        return json.loads(self.sh(host, "cat", "%s/state/%s.json" % (self.root(host), name)).stdout)

    def state_bytes(self, host):
        return self.sh(host, "cat", "%s/state/model_serve.json" % self.root(host)).stdout

    def containers(self, host):
        """The model containers on a host: name -> (id, running, started at, deployment label, digest label)."""
        names = self.sh(host, "docker", "ps", "-a", "--filter", "name=" + CONTAINER, "--format", "{{.Names}}")
        out = {}
        for name in names.stdout.split():
            c = json.loads(self.sh(host, "docker", "container", "inspect", name).stdout)[0]
            labels = c["Config"]["Labels"] or {}
            out[name] = (c["Id"], c["State"]["Running"], c["State"]["StartedAt"],
                         labels.get("ai.autoglm.deployment"), labels.get("ai.autoglm.image.digest"))
        return out

    def live(self, host):
        """(colour, container inspect) of the colour the host's state file names live."""
        colour = self.state(host)["live"]
        inspect = self.sh(host, "docker", "container", "inspect", "%s-%s" % (CONTAINER, colour)).stdout
        return colour, json.loads(inspect)[0]

    def front_status(self, host):
        out = self.sh(host, "python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                      "'http://127.0.0.1:8000/autoglm-front/status', timeout=10).read().decode())")
        return json.loads(out.stdout)

    def weights_listing(self, host):
        """Every file under the host's models directory with size and modification time (the weights' fingerprint)."""
        return self.sh(host, "find", self.root(host) + "/models", "-printf", "%p %s %T@\n").stdout

    def playbook(self, name, playbook, *args, timeout=3600):
        """Run a playbook with the JSON callback; return (rc, seconds, parsed JSON). The JSON goes to .cache/e2e."""
        LOGS.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        # The JSON callback on stdout; of ansible.cfg's callbacks only the audit trail (profile_tasks would print into
        # the JSON; an empty list is an error in ansible-core: "A non-empty plugin name is required").
        proc = subprocess.run(
            [str(ROOT / ".venv/bin/ansible-playbook"), "-i", self.inventory, playbook, *args],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
            env=self.env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACKS_ENABLED="autoglm.fleet.audit",
                         ANSIBLE_LOAD_CALLBACK_PLUGINS="1"))
        seconds = time.monotonic() - start
        (LOGS / ("rollouts-%s.json" % name)).write_text(proc.stdout)
        (LOGS / ("rollouts-%s.stderr" % name)).write_text(proc.stderr)
        try:
            report = json.loads(proc.stdout)
        except ValueError as exc:
            raise AssertionError("%s: no JSON report (rc %s): %s"
                                 % (name, proc.returncode, proc.stderr[-3000:])) from exc
        return proc.returncode, seconds, report

    def fleet(self, name, command, *args, timeout=3600):
        """The operators' CLI (autoglm-fleet, from cli/) on this lab: (rc, seconds, output); output in .cache/e2e."""
        LOGS.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "autoglm_fleet", command, "-i", self.inventory, *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                              env=self.env(PYTHONPATH=str(ROOT / "cli")))
        seconds = time.monotonic() - start
        (LOGS / ("rollouts-%s.out" % name)).write_text(proc.stdout + proc.stderr)
        return proc.returncode, seconds, proc.stdout + proc.stderr


def failed_messages(report):
    """The msg of every failed task result, by host."""
    out = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("failed") and not result.get("ignore_errors"):
                    out.setdefault(host, []).append(result.get("msg", ""))
    return out


def tasks_run_on(report, host, play_prefix):
    """Names of the tasks of the plays whose name starts with play_prefix that ran (not skipped) on host."""
    names = []
    for play in report["plays"]:
        if not play["play"]["name"].startswith(play_prefix):
            continue
        for task in play["tasks"]:
            result = task["hosts"].get(host)
            if result is not None and not result.get("skipped"):
                names.append(task["task"]["name"])
    return names


def batches(report, play_prefix):
    """The hosts of each batch (each play entry: a serial play has one per batch) of the plays named play_prefix..."""
    out = []
    for play in report["plays"]:
        if play["play"]["name"].startswith(play_prefix):
            out.append(sorted({host for task in play["tasks"] for host in task["hosts"]}))
    return out


def changed(report):
    return {host: stats["changed"] for host, stats in report["stats"].items()}
