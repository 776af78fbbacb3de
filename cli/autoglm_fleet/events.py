"""Turn ansible-runner's job events into one line per host and phase, and a summary per host.

A phase is a play. While a play runs, each host's results are counted; when the next play starts (or the run's
stats arrive) one line per host that had results in it is written. A failed or unreachable host is written at
once, with the task and the first line of its message. The stats event gives the recap counts per host; the time
per host is the sum of its task durations (what ran on that host, not the waits between batches).

Only these event fields are read (ansible-runner's ``awx_display`` callback sets them):
``event``, ``created``, ``event_data.{play, play_uuid, task, host, res, duration, ignore_errors}`` and the stats
event's ``{ok, changed, failures, dark, skipped, rescued, ignored, processed}``.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

from autoglm_fleet.table import duration, first_line, table

RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
    "runner_on_async_failed": "failed",
}
PHASE_WIDTH = 34


def phase_name(play: str) -> str:
    """A play's name, short: up to its first parenthesis, cut to PHASE_WIDTH characters."""
    name = (play or "(unnamed play)").split(" (", 1)[0].strip() or play
    return name if len(name) <= PHASE_WIDTH else name[: PHASE_WIDTH - 3] + "..."


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclasses.dataclass
class PhaseCount:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    seconds: float = 0.0


@dataclasses.dataclass
class HostSummary:
    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    seconds: float = 0.0
    failure: str | None = None  # "phase / task: message" of the first failure

    @property
    def result(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


class RunTracker:
    """Feed it every event (``handle``); it writes progress lines through ``emit`` and keeps the summary."""

    def __init__(self, emit: Callable[[str], None] | None = None, progress: bool = True):
        self.emit = emit or (lambda line: None)
        self.progress = progress
        self.started: datetime.datetime | None = None
        self.play: str | None = None
        self.phase: dict[str, PhaseCount] = {}
        self.hosts: dict[str, HostSummary] = {}
        self.stats_seen = False
        self.results: list[dict] = []  # every host result event's event_data, in order (for commands that read them)
        self.warnings: list[str] = []

    # ---- events
    def handle(self, event: dict) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        created = parse_time(event.get("created"))
        if self.started is None and created is not None:
            self.started = created
        if kind == "playbook_on_play_start":
            self._flush_phase(created)
            self.play = data.get("play") or data.get("name") or ""
        elif kind in RESULT_EVENTS:
            self._result(RESULT_EVENTS[kind], data, created)
        elif kind == "playbook_on_no_hosts_matched":
            self.warnings.append("no hosts matched in play %r" % phase_name(data.get("play") or self.play or ""))
        elif kind == "playbook_on_stats":
            self._flush_phase(created)
            self._stats(data)
        return True  # ansible-runner keeps the event in the artifact directory

    def _host(self, name: str) -> HostSummary:
        if name not in self.hosts:
            self.hosts[name] = HostSummary(name)
        return self.hosts[name]

    def _result(self, outcome: str, data: dict, created: datetime.datetime | None) -> None:
        host = data.get("host") or "?"
        res = data.get("res") or {}
        if outcome == "failed" and data.get("ignore_errors"):
            outcome = "ok"
        self.results.append(dict(data, _outcome=outcome))
        count = self.phase.setdefault(host, PhaseCount())
        summary = self._host(host)
        secs = float(data.get("duration") or 0.0)
        count.seconds += secs
        summary.seconds += secs
        if outcome == "ok":
            count.ok += 1
            if res.get("changed"):
                count.changed += 1
        else:
            setattr(count, outcome, getattr(count, outcome) + 1)
        if outcome in ("failed", "unreachable"):
            msg = first_line(res.get("msg") or res.get("stderr") or res.get("reason") or outcome)
            where = "%s / %s" % (phase_name(self.play or data.get("play") or ""), data.get("task") or "?")
            if summary.failure is None:
                summary.failure = "%s: %s" % (where, msg)
            self._line(created, host, "%s  %s: %s" % (outcome.upper(), where, msg))

    def _flush_phase(self, created: datetime.datetime | None) -> None:
        if self.play is not None:
            for host in sorted(self.phase):
                c = self.phase[host]
                if not (c.ok or c.failed or c.unreachable or c.skipped):
                    continue
                state = "unreachable" if c.unreachable else "failed" if c.failed else "changed" if c.changed else "ok"
                self._line(
                    created,
                    host,
                    "%s  %-11s ok=%-3d changed=%-3d failed=%-2d %s"
                    % (phase_name(self.play).ljust(PHASE_WIDTH), state, c.ok, c.changed, c.failed, duration(c.seconds)),
                )
        self.phase = {}

    def _stats(self, data: dict) -> None:
        self.stats_seen = True
        fields = {
            "ok": "ok",
            "changed": "changed",
            "failures": "failed",
            "dark": "unreachable",
            "skipped": "skipped",
            "rescued": "rescued",
            "ignored": "ignored",
        }
        names = set(data.get("processed") or {})
        for key in fields:
            names.update(data.get(key) or {})
        for name in names:
            summary = self._host(name)
            for key, attr in fields.items():
                setattr(summary, attr, int((data.get(key) or {}).get(name, 0)))

    def _line(self, created: datetime.datetime | None, host: str, text: str) -> None:
        if not self.progress:
            return
        elapsed = (created - self.started).total_seconds() if created and self.started else 0.0
        minutes, secs = divmod(int(elapsed), 60)
        self.emit("%3d:%02d  %-18s %s" % (minutes, secs, host, text))

    # ---- results
    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h.host for h in self.hosts.values() if h.failed or h.unreachable)

    def summary_rows(self) -> list[list[object]]:
        rows = []
        for name in sorted(self.hosts):
            h = self.hosts[name]
            rows.append([h.host, h.result, h.ok, h.changed, h.failed, h.unreachable, h.skipped, duration(h.seconds)])
        return rows

    def summary_table(self) -> str:
        return table(
            ["HOST", "RESULT", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED", "TIME"],
            self.summary_rows(),
            right=["OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED", "TIME"],
        )

    def as_dict(self) -> dict:
        return {name: dataclasses.asdict(h) | {"result": h.result} for name, h in sorted(self.hosts.items())}
