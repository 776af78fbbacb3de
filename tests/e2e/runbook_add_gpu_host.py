"""docs/runbooks/add-gpu-host.md, run as written on the e2e lab: lab/scripts/e2e.sh converges every host but the last
GPU host (lab.yml run 1), then runs this file, then lab.yml's second run, which must change nothing on any host.
The new host is bare: in the inventory and booted, nothing installed. Not collected with tests/e2e (the name does not
start with test_): it runs only at that point, `pytest tests/e2e/runbook_add_gpu_host.py`."""

import json
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_cli import artifacts, fleet, host_results  # noqa: E402
from test_lab_serving import BUILD_HOST, GPU_HOSTS, INV, INVENTORY, on_host, runtime_root, state  # noqa: E402

# lab/scripts/e2e.sh names the host its first lab.yml run left out.
NEW = os.environ.get("E2E_NEW_HOST") or GPU_HOSTS[-1]
SERVING = [h for h in GPU_HOSTS if h != NEW]
OTHERS = sorted({*INV["registry"]["hosts"], BUILD_HOST, *(INV.get("monitoring") or {}).get("hosts", [])})
# Step 3's limit: the new host, and the hosts whose facts its run reads or whose configuration names it.
LIMIT = "%s:registry:model_build:monitoring" % NEW


def summary(result):
    """Each host's row of the run's summary.json: result, ok, changed, failed, ..."""
    return json.loads((artifacts(result.stdout) / "summary.json").read_text())["hosts"]


def test_the_new_host_is_bare_and_the_others_serve():
    assert SERVING, "the e2e lab needs a serving GPU host beside the one it adds"
    assert on_host(NEW, "sh", "-c", "test -e %s || echo none" % runtime_root(NEW)).strip() == "none"
    for host in SERVING:
        assert state(host, "model_serve")["current"]["digest"].startswith("sha256:")


def changed_tasks(result, host):
    """(role, task) of each task that changed the host."""
    return [(d.get("resolved_role") or d.get("role"), d.get("task"))
            for d in host_results(artifacts(result.stdout), host)
            if d["event"] == "runner_on_ok" and d["res"].get("changed")]


def test_step_2_preflight_passes_and_changes_nothing_but_the_bundles_apt_source():
    """On an air-gapped site the bundle's apt repository is the only place a bare host can learn whether its kernel
    headers can be installed: the run places it first (bundle_use.yml, every run with a bundle). Nothing else."""
    result = fleet("preflight", "-i", INVENTORY, "-l", NEW)
    assert result.returncode == 0
    hosts = summary(result)
    assert sorted(hosts) == [NEW] and hosts[NEW]["failed"] == 0, hosts
    changed = changed_tasks(result, NEW)
    assert {role for role, _task in changed} <= {"autoglm.fleet.bundle"}, changed
    assert on_host(NEW, "sh", "-c", "test -e %s/venv || echo none" % runtime_root(NEW)).strip() == "none"


def test_step_3_up_converges_the_new_host_and_changes_nothing_on_the_others():
    before = {h: state(h, "model_serve")["current"] for h in SERVING}
    result = fleet("up", "-i", INVENTORY, "-l", LIMIT, timeout=1800)
    assert result.returncode == 0
    hosts = summary(result)
    assert sorted(hosts) == sorted({NEW, *OTHERS}), hosts
    assert hosts[NEW]["result"] == "changed" and hosts[NEW]["failed"] == 0, hosts[NEW]
    for host in OTHERS:
        assert hosts[host]["result"] == "ok" and hosts[host]["changed"] == 0, (host, hosts[host])
    assert re.search(r"^%s\s+changed\s" % re.escape(NEW), result.stdout, re.MULTILINE), result.stdout
    # The hosts that served were not in the run: what they serve is what they served.
    assert {h: state(h, "model_serve")["current"] for h in SERVING} == before


def test_step_4_status_shows_the_new_host_ready_on_the_fleets_version():
    result = fleet("status", "-i", INVENTORY, "-l", NEW, "--json")
    assert result.returncode == 0
    (row,) = json.loads(result.stdout)
    serving = state(SERVING[0], "model_serve")["current"]
    assert row["host"] == NEW and row["reachable"] and row["ready"] is True, row
    assert row["digest"] == serving["digest"] == state(BUILD_HOST, "model_image")["digest"], row
    assert row["weights_revision"] == serving["weights_revision"], row
    assert row["last_run"]["playbook"] == "site.yml" and row["last_run"]["result"] == "changed", row
