"""autoglm-fleet on the converged e2e lab (lab/scripts/e2e.sh runs this after lab.yml): the status table and its
JSON, a failing host's exit code and lines, the artifact directory. Read-only for the lab (a preflight run changes
nothing); the runbooks that change the lab are in test_runbooks.py, which runs last."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# pytest imports test files with --import-mode=importlib (pyproject.toml), which puts no test directory on sys.path.
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_lab_serving import BUILD_HOST, GPU_HOSTS, INV, INVENTORY, ROOT, state  # noqa: E402

ALL_HOSTS = sorted(
    set(INV["registry"].get("hosts", [])) | set(GPU_HOSTS) | set((INV.get("monitoring") or {}).get("hosts", []))
    | {BUILD_HOST}
)


def fleet(*args, timeout=300):
    """autoglm-fleet from this checkout (cli/), with the checkout's ansible.cfg and artifacts under .cache."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "cli"), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "autoglm_fleet", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=timeout, check=False)
    result.seconds = time.monotonic() - start
    print("$ autoglm-fleet %s  (exit %d, %.1f s)\n%s%s" % (" ".join(args), result.returncode, result.seconds,
                                                           result.stdout, result.stderr))
    return result


def artifacts(stdout):
    found = re.findall(r"^artifacts: (\S+)", stdout, re.MULTILINE)
    assert found, stdout
    path = Path(found[0])
    assert path.is_dir() and path.is_relative_to(ROOT / ".cache" / "fleet-runs" / "artifacts"), path
    assert "PLAY RECAP" in (path / "stdout").read_text()
    return path


def host_results(art, host):
    """The event_data of each result of ``host`` (runner_on_*, with its ``res``), in order, from the run's job
    events."""
    found = []
    for path in sorted((art / "job_events").glob("*.json"), key=lambda p: int(p.name.split("-")[0])):
        event = json.loads(path.read_text())
        data = event.get("event_data") or {}
        if data.get("host") == host and event["event"].startswith("runner_on_") and "res" in data:
            found.append(dict(data, event=event["event"]))
    return found


def test_status_table_of_the_converged_lab():
    published = state(BUILD_HOST, "model_image")["digest"]
    result = fleet("status", "-i", INVENTORY)
    assert result.returncode == 0
    # A few seconds per host on the 2-core machine; a regression to a full fact gathering shows here.
    assert result.seconds < 90, result.seconds
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("HOST "))
    assert lines[header].split() == ["HOST", "GROUPS", "OS", "DRIVER", "CUDA", "GPUS", "GPU", "MEM", "IMAGE",
                                     "WEIGHTS", "LIVE", "READY", "LAST", "RUN"]
    rows = {line.split()[0]: line for line in lines[header + 1:header + 1 + len(ALL_HOSTS)]}
    assert sorted(rows) == ALL_HOSTS, result.stdout
    for host in GPU_HOSTS:
        # The serving digest (short), the weights revision, ready; the last run is the lab's site.yml run.
        assert published[:19] in rows[host], rows[host]
        assert re.search(r"\sr1\s", rows[host]) and re.search(r"\syes\s", rows[host]), rows[host]
        assert re.search(r"(lab|site)\.yml (ok|changed) 20", rows[host]), rows[host]
    assert "registry" in rows[BUILD_HOST] and "model_build" in rows[BUILD_HOST]
    artifacts(result.stdout)


def test_status_json_for_scripts():
    result = fleet("status", "-i", INVENTORY, "--json", "-l", "gpu_hosts:model_build")
    assert result.returncode == 0
    rows = {r["host"]: r for r in json.loads(result.stdout)}
    assert sorted(rows) == sorted({*GPU_HOSTS, BUILD_HOST})
    for host in GPU_HOSTS:
        r = rows[host]
        assert r["reachable"] and r["ready"] is True and r["ready_status"] == 200
        assert r["digest"] == state(host, "model_serve")["current"]["digest"]
        assert r["weights_revision"] == "r1" and r["os"].startswith("Debian")
        assert r["drained"] is None and r["last_run"]["result"] in ("ok", "changed")
    assert rows[BUILD_HOST]["published"] == state(BUILD_HOST, "model_image")["digest"]


def test_a_failing_host_exits_1_and_names_the_gate():
    host = GPU_HOSTS[-1]
    result = fleet("preflight", "-i", INVENTORY, "-l", host, "-e", "preflight_min_disk_gib=100000")
    assert result.returncode == 1
    out = result.stdout
    assert re.search(r"^\s+\d+:\d\d  %s\s+FAILED  Preflight / " % re.escape(host), out, re.MULTILINE), out
    assert re.search(r"^%s\s+failed\s" % re.escape(host), out, re.MULTILINE), out
    assert "preflight FAILED: 1 host(s), failed: %s; artifacts: " % host in out
    art = artifacts(out)
    assert "preflight_min_disk_gib" in (art / "stdout").read_text()
    summary = json.loads((art / "summary.json").read_text())
    assert summary["exit_code"] == 1 and summary["hosts"][host]["result"] == "failed"
