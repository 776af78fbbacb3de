#!/usr/bin/env python
"""Each play's wall time in one or two ansible-playbook logs written with the profile_tasks callback (ansible.cfg
enables it), side by side with their ratio: where a larger fleet's re-run spends its extra time.

    bench/play_times.py .cache/bench-scale/rerun-2.log .cache/bench-scale/rerun-6.log

A play's time runs from the timestamp at its first task to the one at the next play's first task (the last play: to
the last timestamp in the log), so it includes the play's own set-up, not the gap before its first task starts.
"""

import re
import sys

PLAY = re.compile(r"^PLAY \[(.*)\] \*+")
STAMP = re.compile(r"\s(\d+):(\d+):([\d.]+) \*+\s*$")


def play_times(path):
    plays, last = [], None
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            match = PLAY.match(line)
            if match:
                plays.append([match.group(1), None])
                continue
            match = STAMP.search(line)
            if match:
                last = int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))
                if plays and plays[-1][1] is None:
                    plays[-1][1] = last
    started = [(name, start) for name, start in plays if start is not None]
    ends = [start for _name, start in started[1:]] + [last]
    return [(name, end - start) for (name, start), end in zip(started, ends, strict=True)]


def main(argv):
    if not 1 <= len(argv) <= 2:
        sys.exit("usage: play_times.py LOG [OTHER_LOG]")
    columns = [play_times(path) for path in argv]
    for row in zip(*columns, strict=False):
        times = [seconds for _name, seconds in row]
        ratio = " %4.1f" % (times[1] / times[0]) if len(times) == 2 and times[0] else ""
        print("".join("%7.1f" % seconds for seconds in times) + ratio + "  " + row[0][0][:90])


if __name__ == "__main__":
    main(sys.argv[1:])
