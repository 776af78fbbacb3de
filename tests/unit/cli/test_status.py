"""`autoglm-fleet status`: fleet_status facts (recorded, and as a converged serving host has them) to rows and table;
each host's last run from the audit trail."""

from __future__ import annotations

import json

from autoglm_fleet import status
from autoglm_fleet.events import RunTracker

GIB = 1024**3

# fleet_status as playbooks/status.yml sets it on a GPU host that serves (two GPUs, blue-green's live colour).
SERVING = {
    "groups": ["canary", "gpu_hosts"],
    "os": "Debian 12.11",
    "kernel": "6.1.0-28-amd64",
    "root_dir": "/opt/autoglm",
    "nvml_status": "ok",
    "driver": "535.216.01",
    "cuda": "12.2",
    "pci_gpu_count": "2",
    "gpus": [
        {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "memory_total_bytes": 80 * GIB, "memory_used_bytes": 20 * GIB},
        {"index": 1, "name": "NVIDIA A100-SXM4-80GB", "memory_total_bytes": 80 * GIB, "memory_used_bytes": 0},
    ],
    "state": {
        "model_serve": {
            "live": "green",
            "current": {"image": "reg:5000/autoglm/model-server", "digest": "sha256:" + "ab" * 32,
                        "weights_revision": "r2026-12"},
            "history": [{"digest": "sha256:" + "ab" * 32}, {"digest": "sha256:" + "cd" * 32}],
        },
    },
    "ready": {"checked": True, "status": 200, "ok": True, "port": 8000},
}


def statuses(events) -> tuple[dict, dict]:
    tracker = RunTracker(progress=False)
    for event in events("status-localhost-bare.jsonl"):
        tracker.handle(event)
    return status.statuses_from_results(tracker.results), status.failures_from_results(tracker.results)


def test_a_bare_host_from_recorded_events(events):
    found, why = statuses(events)
    assert list(found) == ["localhost"] and why == {}
    row = status.host_row("localhost", found["localhost"], None, None)
    assert row["reachable"] is True and row["runtime_root"] == "/opt/autoglm"
    assert row["groups"] == ["gpu_hosts"]
    assert row["os"].startswith("Debian 12")
    assert row["driver"] is None and row["cuda"] is None and row["gpus"] == []
    assert row["digest"] is None and row["live"] is None
    assert row["ready"] is False and row["ready_status"] == -1
    line = status.render([row]).splitlines()[1].split()
    assert line[0] == "localhost" and "NO" in line and "answer)" in line


def test_a_serving_host_row_and_table():
    last = {"playbook": "site.yml", "time": "2026-12-05T09:14:40.883Z", "result": "changed", "status": "ok"}
    row = status.host_row("gpu-1", SERVING, last, None)
    assert row["groups"] == ["canary", "gpu_hosts"]
    assert row["gpu_memory_total_bytes"] == 160 * GIB and row["gpu_memory_used_bytes"] == 20 * GIB
    assert row["digest"] == "sha256:" + "ab" * 32
    assert row["history"][1] == "sha256:" + "cd" * 32
    assert row["live"] == "green" and row["ready"] is True
    assert row["last_run_text"] == "site.yml changed 2026-12-05 09:14"
    header, line = status.render([row]).splitlines()
    assert header.split()[:4] == ["HOST", "GROUPS", "OS", "DRIVER"]
    cells = [c for c in line.split("  ") if c.strip()]
    assert [c.strip() for c in cells] == [
        "gpu-1", "canary,gpu_hosts", "Debian 12.11", "535.216.01", "12.2", "2x A100-SXM4-80GB", "20G/160G",
        "sha256:abababababab", "r2026-12", "green", "yes", "site.yml changed 2026-12-05 09:14",
    ]
    json.dumps(row)  # --json prints it as it is


def test_no_live_colour_without_one_in_the_state_file():
    st = json.loads(json.dumps(SERVING))
    del st["state"]["model_serve"]["live"]
    row = status.host_row("gpu-1", st, None, None)
    assert row["live"] is None
    assert status.table_row(row)[9] is None  # printed as '-'


def test_a_drained_host_and_an_unreachable_one():
    st = json.loads(json.dumps(SERVING))
    st["state"]["drain"] = {"reason": "driver upgrade", "since": "2026-12-05T09:00:00Z"}
    st["ready"] = {"checked": True, "status": 503, "ok": False}
    assert status.table_row(status.host_row("gpu-1", st, None, None))[10] == "DRAINED NO (503)"
    down = status.host_row("gpu-2", None, None, "unreachable: ssh: no route")
    assert down["reachable"] is False
    assert status.table_row(down)[10] == "unreachable: ssh: no route"


def write_audit(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def run_end(playbook, time, stats):
    return {"type": "run_end", "playbook": playbook, "time": time, "status": "ok", "stats": stats}


def test_last_runs_newest_per_host_and_not_status_runs(tmp_path):
    log = tmp_path / "audit.log"
    write_audit(log, [
        run_end("/p/playbooks/site.yml", "2026-12-05T08:00:00Z", {"a": {"changed": 3}, "b": {"failures": 1}}),
        {"type": "task", "host": "a", "result": "ok"},
        run_end("/p/playbooks/registry_gc.yml", "2026-12-05T09:00:00Z", {"b": {"changed": 0}}),
        run_end("/p/playbooks/status.yml", "2026-12-05T10:00:00Z", {"a": {}, "b": {}}),
    ])
    with log.open("a") as f:
        f.write("not json\n")
    last = status.last_runs(str(log), ["a", "b", "c"])
    assert last["a"] == {"playbook": "site.yml", "time": "2026-12-05T08:00:00Z", "result": "changed", "status": "ok"}
    assert last["b"]["playbook"] == "registry_gc.yml" and last["b"]["result"] == "ok"
    assert "c" not in last
    assert status.last_runs(str(tmp_path / "missing.log"), ["a"]) == {}


def test_reverse_lines_across_blocks(tmp_path):
    path = tmp_path / "f"
    lines = [("line %d " % i) * 7 for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    got = [x.decode() for x in status._reverse_lines(str(path), block=64) if x]
    assert got == list(reversed(lines))
