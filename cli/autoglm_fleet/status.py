"""`autoglm-fleet status`: the fleet_status fact of each host (playbooks/status.yml) and the last run of each host
from the audit trail, as a table or as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

from autoglm_fleet.table import first_line, gib, short_digest, table

# Runs of these playbooks are not "the last run" of a host: they only read.
READ_ONLY_PLAYBOOKS = {"status.yml"}
AUDIT_TAIL_BYTES = 64 * 1024 * 1024  # how far back from the end of the audit log to look for each host's last run

HEADERS = ["HOST", "GROUPS", "OS", "DRIVER", "CUDA", "GPUS", "GPU MEM", "IMAGE", "WEIGHTS", "LIVE", "READY", "LAST RUN"]


def statuses_from_results(results: Iterable[dict]) -> dict[str, dict]:
    """fleet_status per host, from the set_fact results of a status.yml run (RunTracker.results)."""
    found: dict[str, dict] = {}
    for data in results:
        facts = (data.get("res") or {}).get("ansible_facts") or {}
        if data.get("_outcome") == "ok" and isinstance(facts.get("fleet_status"), dict):
            found[data.get("host") or "?"] = facts["fleet_status"]
    return found


def failures_from_results(results: Iterable[dict]) -> dict[str, str]:
    """Why a host has no status: its first failed or unreachable result."""
    why: dict[str, str] = {}
    for data in results:
        if data.get("_outcome") in ("failed", "unreachable"):
            res = data.get("res") or {}
            why.setdefault(data.get("host") or "?", "%s: %s" % (data["_outcome"], first_line(res.get("msg"), 100)))
    return why


def _reverse_lines(path: str, limit: int = AUDIT_TAIL_BYTES, block: int = 1 << 16) -> Iterator[bytes]:
    """The lines of a file, last first, reading at most ``limit`` bytes from its end."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        stop = max(0, pos - limit)
        rest = b""
        while pos > stop:
            size = min(block, pos - stop)
            pos -= size
            f.seek(pos)
            chunk = f.read(size) + rest
            lines = chunk.split(b"\n")
            rest = lines[0]
            yield from reversed(lines[1:])
        if rest:
            yield rest


def last_runs(audit_log: str | None, hosts: Iterable[str]) -> dict[str, dict]:
    """Each host's last run in the audit trail (docs/audit.md): the newest sealed run_end whose stats name the host,
    other than a read-only playbook's. {"playbook", "time", "result": ok|changed|failed|unreachable, "status"}.
    The log is read, not verified (`autoglm-fleet audit verify` does that)."""
    wanted = set(hosts)
    found: dict[str, dict] = {}
    if not audit_log or not wanted or not os.path.isfile(audit_log):
        return found
    try:
        for raw in _reverse_lines(audit_log):
            if b'"run_end"' not in raw:
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if record.get("type") != "run_end" or not isinstance(record.get("stats"), dict):
                continue
            playbook = os.path.basename(str(record.get("playbook") or ""))
            if playbook in READ_ONLY_PLAYBOOKS:
                continue
            for host, stats in record["stats"].items():
                if host in wanted and host not in found:
                    result = (
                        "unreachable" if stats.get("unreachable")
                        else "failed" if stats.get("failures")
                        else "changed" if stats.get("changed")
                        else "ok"
                    )
                    found[host] = {
                        "playbook": playbook,
                        "time": record.get("time"),
                        "result": result,
                        "status": record.get("status"),
                    }
            if len(found) == len(wanted):
                break
    except OSError:
        return found
    return found


def host_row(host: str, st: dict | None, last: dict | None, why: str | None) -> dict:
    """One host's status for --json and the table: plain keys, full values."""
    last_text = None
    if last:
        when = (last.get("time") or "")[:16].replace("T", " ")
        last_text = "%s %s %s" % (last["playbook"], last["result"], when)
    if st is None:
        return {"host": host, "reachable": False, "error": why or "no status", "last_run": last,
                "last_run_text": last_text}
    state = st.get("state") or {}
    serve = state.get("model_serve") or {}
    current = serve.get("current") or {}
    gpus = st.get("gpus") or []
    total = sum(int(g.get("memory_total_bytes") or 0) for g in gpus)
    used = sum(int(g.get("memory_used_bytes") or 0) for g in gpus)
    ready = st.get("ready") or {}
    return {
        "host": host,
        "reachable": True,
        "groups": [g for g in st.get("groups") or [] if g not in ("all", "ungrouped")],
        "os": (st.get("os") or "").strip(),
        "kernel": st.get("kernel"),
        "runtime_root": st.get("root_dir"),
        "driver": st.get("driver") or None,
        "cuda": st.get("cuda") or None,
        "nvml_status": st.get("nvml_status"),
        "pci_gpu_count": int(st.get("pci_gpu_count") or 0),
        "gpus": gpus,
        "gpu_memory_total_bytes": total if gpus else None,
        "gpu_memory_used_bytes": used if gpus else None,
        "image": current.get("image"),
        "digest": current.get("digest"),
        "weights_revision": current.get("weights_revision"),
        "live": serve.get("live"),
        "history": [h.get("digest") for h in serve.get("history") or []],
        "published": (state.get("model_image") or {}).get("digest"),
        "drained": state.get("drain"),
        "ready": (bool(ready.get("ok")) if ready.get("checked") in (True, "True", "true") else None),
        "ready_status": ready.get("status"),
        "last_run": last,
        "last_run_text": last_text,
    }


def gpu_text(row: dict) -> str | None:
    gpus = row.get("gpus") or []
    if not gpus:
        return "none (%d on PCI)" % row["pci_gpu_count"] if row.get("pci_gpu_count") else None
    names = sorted({str(g.get("name") or "?").replace("NVIDIA ", "") for g in gpus})
    return "%dx %s" % (len(gpus), "/".join(names))


def table_row(row: dict) -> list[object]:
    if not row.get("reachable"):
        return [row["host"], None, None, None, None, None, None, None, None, None, row.get("error"), _last(row)]
    mem = None
    if row.get("gpu_memory_total_bytes"):
        mem = "%s/%s" % (gib(row["gpu_memory_used_bytes"]), gib(row["gpu_memory_total_bytes"]))
    ready = row.get("ready")
    ready_text = None if ready is None else ("yes" if ready else "NO (%s)" % _http_status(row.get("ready_status")))
    if row.get("drained"):
        ready_text = "DRAINED" + ("" if ready_text is None else " " + ready_text)
    return [
        row["host"],
        ",".join(row["groups"]),
        row["os"],
        row["driver"],
        row["cuda"],
        gpu_text(row),
        mem,
        short_digest(row.get("digest")),
        row.get("weights_revision"),
        row.get("live"),
        ready_text,
        _last(row),
    ]


def _last(row: dict) -> str | None:
    return row.get("last_run_text") if row.get("last_run") else None


def render(rows: list[dict]) -> str:
    return table(HEADERS, [table_row(r) for r in rows])


def _http_status(value: object) -> str:
    """uri's status: an HTTP code, or -1 when nothing answered."""
    try:
        code = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "no answer"
    return str(code) if code > 0 else "no answer"
