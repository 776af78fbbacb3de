"""Run a playbook or a module through ansible-runner, with a RunTracker reading its events."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence

from autoglm_fleet import EXIT_FAILED, EXIT_OK
from autoglm_fleet.events import RunTracker
from autoglm_fleet.project import ansible_cfg, artifacts_root

KEEP_ARTIFACTS = 200  # runs kept under <root>/artifacts (ansible-runner's rotate_artifacts)


@dataclasses.dataclass
class Options:
    """What every command passes through to ansible-playbook."""

    project: pathlib.Path
    inventory: str
    extra_vars: Sequence[str] = ()
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    check: bool = False
    diff: bool = False
    verbosity: int = 0
    artifacts: str | None = None
    forks: int | None = None


@dataclasses.dataclass
class Outcome:
    rc: int  # ansible-playbook's (or ansible's) own exit status
    status: str  # ansible-runner's: successful, failed, canceled, timeout
    artifact_dir: pathlib.Path
    tracker: RunTracker

    @property
    def exit_code(self) -> int:
        if self.status == "successful" and self.rc == 0 and not self.tracker.failed_hosts:
            return EXIT_OK
        return EXIT_FAILED

    def stdout_tail(self, lines: int = 20) -> str:
        try:
            text = (self.artifact_dir / "stdout").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


def cmdline(opts: Options, more: Sequence[str] = ()) -> list[str]:
    args: list[str] = []
    for value in opts.extra_vars:
        args += ["-e", value]
    if opts.limit:
        args += ["--limit", opts.limit]
    if opts.tags:
        args += ["--tags", opts.tags]
    if opts.skip_tags:
        args += ["--skip-tags", opts.skip_tags]
    if opts.check:
        args.append("--check")
    if opts.diff:
        args.append("--diff")
    if opts.forks:
        args += ["--forks", str(opts.forks)]
    if opts.verbosity:
        args.append("-" + "v" * min(opts.verbosity, 6))
    return [*args, *more]


def environment(project: pathlib.Path) -> dict[str, str]:
    """ansible-playbook from the venv this CLI runs in, with the project's ansible.cfg (collections path, the audit
    callback); no colour in the artifact's stdout."""
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    env = {"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    cfg = ansible_cfg(project)
    if cfg is not None:
        env["ANSIBLE_CONFIG"] = str(cfg)
    return env


def new_ident(command: str) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return "%s-%s" % (stamp, command.replace(" ", "-"))


def execute(
    opts: Options,
    command: str,
    *,
    playbook: str | None = None,
    module: str | None = None,
    module_args: str | None = None,
    host_pattern: str | None = None,
    more_args: Sequence[str] = (),
    emit: Callable[[str], None] = print,
    progress: bool = True,
) -> Outcome:
    """Run ``playbook`` (a path relative to the project) or an ad hoc ``module``; return the outcome.
    Ansible's own output goes to <artifact dir>/stdout only."""
    import ansible_runner  # imported here: `autoglm-fleet --help` stays fast

    root = artifacts_root(opts.project, opts.artifacts)
    ident = new_ident(command)
    if progress:
        # ansible-runner writes <private data dir>/artifacts/<ident>/: stdout (Ansible's own output), job_events/.
        emit("artifacts: %s (Ansible's output: its stdout)" % (root / "artifacts" / ident))
    tracker = RunTracker(emit=emit, progress=progress)
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):  # the first Ctrl-C stops the run cleanly; ansible-runner ends ansible-playbook
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        emit("interrupted: stopping ansible-playbook (Ctrl-C again to quit at once)")

    # ansible-runner keeps a run's command line and environment in <private data dir>/env/ and reads them back in the
    # next run that does not pass its own: a shared private data dir would run `status` with the previous command's
    # --limit and --tags. Each run gets its own (removed after it), and writes its artifacts under the shared root.
    private = pathlib.Path(tempfile.mkdtemp(prefix=".run-%s-" % ident, dir=root))
    kwargs = {
        "private_data_dir": str(private),
        "artifact_dir": str(root / "artifacts"),
        "project_dir": str(opts.project),
        "ident": ident,
        "inventory": opts.inventory,
        "envvars": environment(opts.project),
        "cmdline": shlex.join(cmdline(opts, more_args)),
        "quiet": True,
        "event_handler": tracker.handle,
        "cancel_callback": cancel.is_set,
        "rotate_artifacts": KEEP_ARTIFACTS,
    }
    if playbook:
        kwargs["playbook"] = playbook
    else:
        kwargs.update(module=module, module_args=module_args or "", host_pattern=host_pattern or "all")
    signal.signal(signal.SIGINT, on_sigint)
    try:
        runner = ansible_runner.run(**kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)
        shutil.rmtree(private, ignore_errors=True)
    artifact_dir = pathlib.Path(runner.config.artifact_dir)
    outcome = Outcome(rc=runner.rc, status=runner.status, artifact_dir=artifact_dir, tracker=tracker)
    write_summary(outcome, command, opts, playbook or module)
    return outcome


def write_summary(outcome: Outcome, command: str, opts: Options, what: str | None) -> None:
    """<artifact dir>/summary.json: what ran, how it ended, and the per-host summary (for scripts)."""
    summary = {
        "command": command,
        "what": what,
        "inventory": opts.inventory,
        "limit": opts.limit,
        "tags": opts.tags,
        "check": opts.check,
        "rc": outcome.rc,
        "status": outcome.status,
        "exit_code": outcome.exit_code,
        "hosts": outcome.tracker.as_dict(),
        "artifact_dir": str(outcome.artifact_dir),
    }
    with contextlib.suppress(OSError):
        (outcome.artifact_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
