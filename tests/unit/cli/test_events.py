"""RunTracker over recorded runner events: one line per host and phase, failures at once, the summary per host."""

from __future__ import annotations

import pathlib

import pytest
from autoglm_fleet import EXIT_FAILED, EXIT_OK
from autoglm_fleet.events import RunTracker, phase_name
from autoglm_fleet.run import Options, Outcome, cmdline
from autoglm_fleet.table import first_line


def replay(events, **kwargs) -> tuple[RunTracker, list[str]]:
    lines: list[str] = []
    tracker = RunTracker(emit=lines.append, **kwargs)
    for event in events:
        tracker.handle(event)
    return tracker, lines


def test_one_line_per_host_and_phase_and_the_failure_at_once(events):
    _tracker, lines = replay(events("two-hosts-one-fails.jsonl"))
    # The failure first (written when it happens), then the phase lines when the next play starts.
    assert "FAILED  Phase one / Fail on b: boom on b" in lines[0]
    assert lines[0].split()[1] == "b"
    phase_lines = [line.split() for line in lines[1:]]
    assert [(w[1], w[2], w[3], w[4]) for w in phase_lines] == [
        ("a", "Phase", "one", "ok"),
        ("b", "Phase", "one", "failed"),
        ("a", "Phase", "two", "changed"),
    ]
    # b stopped after its failure: it has no line for phase two.
    assert not any(w[1] == "b" and w[3] == "two" for w in phase_lines)
    # Each line starts with the time since the run began, m:ss.
    assert all(line.strip().split()[0].count(":") == 1 for line in lines)


def test_summary_from_the_recap(events):
    tracker = replay(events("two-hosts-one-fails.jsonl"))[0]
    assert tracker.stats_seen
    assert tracker.failed_hosts == ["b"]
    a, b = tracker.hosts["a"], tracker.hosts["b"]
    assert (a.ok, a.changed, a.failed, a.result) == (2, 1, 0, "changed")
    assert (b.ok, b.changed, b.failed, b.result) == (1, 0, 1, "failed")
    assert b.failure == "Phase one / Fail on b: boom on b"
    assert a.seconds > 0 and b.seconds > 0
    table = tracker.summary_table().splitlines()
    assert table[0].split() == ["HOST", "RESULT", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED", "TIME"]
    assert table[1].split()[:7] == ["a", "changed", "2", "1", "0", "0", "1"]
    assert table[2].split()[:7] == ["b", "failed", "1", "0", "1", "0", "0"]


def test_progress_off_writes_nothing_but_keeps_the_results(events):
    tracker, lines = replay(events("status-localhost-bare.jsonl"), progress=False)
    assert lines == []
    assert tracker.results and all("_outcome" in r for r in tracker.results)


def test_an_ignored_failure_counts_as_ok():
    tracker, lines = replay([
        {"event": "playbook_on_play_start", "event_data": {"play": "P"}},
        {"event": "runner_on_failed",
         "event_data": {"host": "h", "task": "t", "ignore_errors": True, "res": {"msg": "no"}}},
        {"event": "playbook_on_stats", "event_data": {"ok": {"h": 1}, "ignored": {"h": 1}}},
    ])
    assert tracker.failed_hosts == []
    assert "FAILED" not in "\n".join(lines)
    assert tracker.hosts["h"].ignored == 1


def test_an_unreachable_host():
    tracker, lines = replay([
        {"event": "playbook_on_play_start", "event_data": {"play": "Runtime (layout) on every fleet host"}},
        {"event": "runner_on_unreachable", "event_data": {
            "host": "gpu-9", "task": "Gathering Facts",
            "res": {"msg": "Failed to connect to the host via ssh: no route\nmore"}}},
        {"event": "playbook_on_stats", "event_data": {"dark": {"gpu-9": 1}}},
    ])
    assert tracker.failed_hosts == ["gpu-9"]
    assert tracker.hosts["gpu-9"].result == "unreachable"
    assert "UNREACHABLE  Runtime / Gathering Facts: Failed to connect to the host via ssh: no route" in lines[0]


@pytest.mark.parametrize(
    ("play", "phase"),
    [
        ("Preflight (every gate, all failures of a host in one message) before anything changes a host", "Preflight"),
        ("", "(unnamed play)"),
        ("A" * 50, "A" * 31 + "..."),
    ],
)
def test_phase_name(play, phase):
    assert phase_name(play) == phase


@pytest.mark.parametrize(
    ("status", "rc", "failed", "code"),
    [("successful", 0, False, EXIT_OK), ("failed", 2, True, EXIT_FAILED), ("failed", 4, False, EXIT_FAILED),
     ("canceled", 0, False, EXIT_FAILED), ("successful", 0, True, EXIT_FAILED)],
)
def test_exit_code(status, rc, failed, code):
    tracker = RunTracker()
    if failed:
        tracker.handle({"event": "playbook_on_stats", "event_data": {"failures": {"h": 1}}})
    assert Outcome(rc=rc, status=status, artifact_dir=pathlib.Path("/nonexistent"), tracker=tracker).exit_code == code


def test_cmdline_passes_everything_through():
    opts = Options(project=pathlib.Path("/p"), inventory="/i", extra_vars=["a=1", '{"b": 2}'], limit="gpu-1",
                   tags="preflight", skip_tags="publish", check=True, diff=True, verbosity=9, forks=3)
    assert cmdline(opts, ["-c", "local"]) == [
        "-e", "a=1", "-e", '{"b": 2}', "--limit", "gpu-1", "--tags", "preflight", "--skip-tags", "publish",
        "--check", "--diff", "--forks", "3", "-vvvvvv", "-c", "local",
    ]


@pytest.mark.parametrize(
    ("msg", "line"),
    [
        ("Preflight failed 1 gate(s) on gpu-2:\n- disk: free disk space is 45.9 GiB\nWarnings:\n- x",
         "Preflight failed 1 gate(s) on gpu-2: - disk: free disk space is 45.9 GiB"),
        ("\n  one line  \nsecond", "one line"),
        ("", ""),
        ("x" * 200, "x" * 157 + "..."),
    ],
)
def test_the_failure_line_says_what_failed(msg, line):
    assert first_line(msg) == line
