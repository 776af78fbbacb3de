"""bench/play_times.py reads each play's wall time from profile_tasks' timestamps (the elapsed column at each task)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "play_times.py"

LOG = """
PLAY [Bring up the lab hosts] **************************************************

TASK [Create the network] ******************************************************
Monday 07 December 2026  00:55:18 +0000 (0:00:00.573)       0:00:00.573 *******
ok: [localhost]

TASK [Create the hosts] ********************************************************
Monday 07 December 2026  00:55:19 +0000 (0:00:01.425)       0:00:01.999 *******
ok: [localhost]

PLAY [Preflight] ***************************************************************

TASK [Check] *******************************************************************
Monday 07 December 2026  00:55:21 +0000 (0:00:01.501)       0:00:03.500 *******
ok: [h1]

PLAY RECAP *********************************************************************
h1 : ok=1

TASKS RECAP ********************************************************************
Monday 07 December 2026  00:56:30 +0000 (0:01:09.000)       0:01:12.500 *******
"""


def _load():
    spec = importlib.util.spec_from_file_location("play_times", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_play_runs_from_its_first_task_to_the_next_plays(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(LOG)
    times = _load().play_times(str(log))
    assert [play[0] for play in times] == ["Bring up the lab hosts", "Preflight"]
    assert abs(times[0][1] - 2.927) < 1e-9  # 0:00:00.573 -> 0:00:03.500
    assert abs(times[1][1] - 69.0) < 1e-9  # 0:00:03.500 -> 0:01:12.500, the last timestamp


def test_two_logs_print_side_by_side_with_their_ratio(tmp_path, capsys):
    one, two = tmp_path / "one.log", tmp_path / "two.log"
    one.write_text(LOG)
    two.write_text(LOG.replace("0:01:12.500", "0:02:21.500"))
    _load().main([str(one), str(two)])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["    2.9    2.9  1.0  Bring up the lab hosts", "   69.0  138.0  2.0  Preflight"]
