"""autoglm-fleet: run the autoglm.fleet playbooks through ansible-runner, one line per host and phase, a summary
per host at the end; `status` prints a table of the fleet. docs/cli.md has every command.

Exit codes: 0 success, 1 a host failed or was unreachable (or ansible-playbook stopped with an error),
2 usage error (bad arguments, or what the command needs is missing from this checkout).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
from collections.abc import Sequence

from autoglm_fleet import EXIT_FAILED, EXIT_OK, EXIT_USAGE, status
from autoglm_fleet.project import (
    UsageError,
    audit_settings,
    collection_version,
    find_project,
    playbook,
    resolve_inventory,
)
from autoglm_fleet.run import Options, Outcome, execute

PENDING = {
    "playbooks/rollback.yml": "blue-green rollback (issue 15) has not landed on this checkout",
}


def out(line: str = "") -> None:
    print(line, flush=True)


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- arguments
def _common(parser: argparse.ArgumentParser, run_options: bool = True) -> None:
    parser.add_argument(
        "-i", "--inventory", metavar="INVENTORY",
        help="inventory file or directory (default: $AUTOGLM_FLEET_INVENTORY, else the lab: inventories/lab)",
    )
    parser.add_argument(
        "-e", "--extra-vars", action="append", default=[], metavar="VARS",
        help="passed to ansible-playbook as -e (key=value, JSON or @file); repeat it",
    )
    parser.add_argument("--project", metavar="DIR", help="the autoglm.fleet checkout (default: found from here)")
    parser.add_argument(
        "--artifacts", metavar="DIR",
        help="ansible-runner's data directory (default: $AUTOGLM_FLEET_ARTIFACTS, else <project>/.cache/fleet-runs)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="ansible-playbook -v (in the artifacts)")
    if run_options:
        parser.add_argument("-l", "--limit", metavar="PATTERN", help="only these hosts (ansible-playbook --limit)")
        parser.add_argument("-C", "--check", action="store_true", help="check mode: change nothing, say what would")
        parser.add_argument("-D", "--diff", action="store_true", help="show the changes in files (in the artifacts)")
        parser.add_argument("-f", "--forks", type=int, metavar="N", help="parallel hosts (ansible-playbook --forks)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoglm-fleet",
        description="Drive an autoglm.fleet fleet: each command runs a playbook through ansible-runner and prints "
        "one line per host and phase, then a summary per host. Ansible's own output goes to the artifact "
        "directory, whose path is printed.",
        epilog="Exit codes: 0 success, 1 a host failed or was unreachable, 2 usage error. Docs: docs/cli.md",
    )
    parser.add_argument("--version", action="store_true", help="print the collection's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("up", help="converge the fleet: playbooks/site.yml (every phase, canary first)")
    _common(p)
    p.add_argument("-t", "--tags", help="only these phases (site.yml tags: preflight, runtime, docker, ...)")
    p.add_argument("--skip-tags", help="skip these phases")

    p = sub.add_parser("status", help="a table per host: OS, driver, CUDA, GPUs, what serves, ready, last run")
    _common(p, run_options=False)
    p.add_argument("-l", "--limit", metavar="PATTERN", help="only these hosts")
    p.add_argument("--json", action="store_true", help="print JSON (a list, one object per host) for scripts")

    p = sub.add_parser("rollout", help="roll the model out: site.yml --tags model_weights,model_serve (canary first)")
    _common(p)
    p.add_argument(
        "--digest", help="the image digest to roll out (-e model_serve_digest=...; default: the recorded one)"
    )
    p.add_argument("--batch", help="hosts per batch after the canaries (-e fleet_batch=..., e.g. 1 or 25%%)")

    p = sub.add_parser("rollback", help="return to a recorded version: playbooks/rollback.yml (blue-green)")
    _common(p)
    p.add_argument(
        "--to", metavar="DIGEST", help="a digest in the hosts' history (-e rollback_to=...; default: the previous)"
    )

    p = sub.add_parser("preflight", help="every gate, nothing changed: site.yml --tags preflight")
    _common(p)

    p = sub.add_parser("play", help="run another playbook of the project by name (registry_gc, driver_upgrade, ...)")
    _common(p)
    p.add_argument("name", help="playbooks/<name>.yml")
    p.add_argument("-t", "--tags", help="only these tags")
    p.add_argument("--skip-tags", help="skip these tags")

    bundle = sub.add_parser("bundle", help="offline bundles for air-gapped sites: build, verify (docs/bundle.md)")
    bsub = bundle.add_subparsers(dest="bundle_command", metavar="ACTION")
    p = bsub.add_parser("build", help="build or refresh a signed bundle on this controller: playbooks/bundle.yml")
    _common(p)
    p.add_argument("--dir", metavar="DIR", help="where the bundle goes (-e bundle_dir=...)")
    p.add_argument("--signing-key", metavar="KEY", help="the operator's private key (-e bundle_signing_key=...)")
    p.add_argument(
        "--update-base", metavar="DIR",
        help="also write an update bundle against this one: the site's current bundle, or a directory with just its "
        "manifest.json and manifest.sig (-e bundle_update_base=...); needs --update-dir",
    )
    p.add_argument("--update-dir", metavar="DIR", help="where the update bundle goes (-e bundle_update_dir=...)")
    p = bsub.add_parser(
        "verify", help="check a bundle's signature and every file, on this controller: playbooks/bundle_verify.yml"
    )
    _common(p, run_options=False)
    p.add_argument("path", metavar="DIR", help="the bundle (the directory with manifest.json and manifest.sig)")
    p.add_argument("--public-key", metavar="KEY", required=True, help="the operator's public key (PEM, .pub)")
    p.add_argument(
        "--base", metavar="DIR",
        help="DIR is an update bundle: apply it onto this one (the site's current bundle, left as it is) into "
        "--apply-dir, and verify the result whole",
    )
    p.add_argument("--apply-dir", metavar="DIR", help="with --base: where the applied bundle goes (must not exist)")

    audit = sub.add_parser("audit", help="the run audit trail (docs/audit.md)")
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    p = asub.add_parser("verify", help="check the audit log's chain with its key (scripts/audit-verify)")
    p.add_argument("--project", metavar="DIR", help="the autoglm.fleet checkout (default: found from here)")
    p.add_argument("--log", help="the audit log (default: as the callback finds it: $AUTOGLM_AUDIT_LOG, ansible.cfg)")
    p.add_argument("--key-file", help="its key (default: $AUTOGLM_AUDIT_KEY_FILE, ansible.cfg)")
    p.add_argument("--expect-last", metavar="MAC", help="a run_end MAC noted elsewhere: it must be in the log")
    return parser


# ---------------------------------------------------------------- running
def options(args: argparse.Namespace, project: pathlib.Path) -> Options:
    return Options(
        project=project,
        inventory=resolve_inventory(project, args.inventory),
        extra_vars=list(args.extra_vars),
        limit=getattr(args, "limit", None),
        tags=getattr(args, "tags", None),
        skip_tags=getattr(args, "skip_tags", None),
        check=getattr(args, "check", False),
        diff=getattr(args, "diff", False),
        verbosity=args.verbose,
        artifacts=args.artifacts,
        forks=getattr(args, "forks", None),
    )


def report(command: str, outcome: Outcome) -> int:
    """The summary table, the failures, where the artifacts are; the exit code."""
    tracker = outcome.tracker
    out()
    if tracker.hosts:
        out(tracker.summary_table())
    for warning in tracker.warnings:
        out("warning: %s" % warning)
    for name in tracker.failed_hosts:
        failure = tracker.hosts[name].failure
        if failure:
            out("%s: %s" % (name, failure))
    code = outcome.exit_code
    if code != EXIT_OK and not tracker.failed_hosts:
        # ansible-playbook stopped before or outside a host's task (syntax, undefined variable, no hosts matched).
        out("ansible-playbook ended with status %s (runner: %s); the end of its output:" % (outcome.rc, outcome.status))
        for line in outcome.stdout_tail().splitlines():
            out("  | " + line)
    verdict = "succeeded" if code == EXIT_OK else "FAILED"
    failed = tracker.failed_hosts
    failed_text = (", failed: " + ", ".join(failed)) if failed else ""
    hosts = len(tracker.hosts)
    out("%s %s: %d host(s)%s; artifacts: %s" % (command, verdict, hosts, failed_text, outcome.artifact_dir))
    return code


def announce(command: str, what: str, opts: Options) -> None:
    bits = [what, "on", opts.inventory]
    if opts.limit:
        bits += ["limit", opts.limit]
    if opts.tags:
        bits += ["tags", opts.tags]
    if opts.check:
        bits.append("(check mode)")
    out("%s: %s" % (command, " ".join(bits)))


def run_playbook(command: str, opts: Options, path: str, more: Sequence[str] = ()) -> int:
    announce(command, path, opts)
    outcome = execute(opts, command, playbook=path, more_args=more, emit=out)
    return report(command, outcome)


def need(project: pathlib.Path, relative: str, what: str) -> str:
    return playbook(project, relative, what, PENDING.get(relative, ""))


def cmd_up(args, project):
    opts = options(args, project)
    return run_playbook("up", opts, need(project, "playbooks/site.yml", "up"))


def cmd_preflight(args, project):
    opts = options(args, project)
    opts.tags = "preflight"
    return run_playbook("preflight", opts, need(project, "playbooks/site.yml", "preflight"))


def cmd_rollout(args, project):
    opts = options(args, project)
    opts.tags = "model_weights,model_serve"
    if args.digest:
        opts.extra_vars = [*opts.extra_vars, json.dumps({"model_serve_digest": args.digest})]
    if args.batch:
        opts.extra_vars = [*opts.extra_vars, json.dumps({"fleet_batch": args.batch})]
    return run_playbook("rollout", opts, need(project, "playbooks/site.yml", "rollout"))


def cmd_rollback(args, project):
    path = need(project, "playbooks/rollback.yml", "rollback")
    opts = options(args, project)
    if args.to:
        opts.extra_vars = [*opts.extra_vars, json.dumps({"rollback_to": args.to})]
    return run_playbook("rollback", opts, path)


def cmd_play(args, project):
    name = args.name[:-4] if args.name.endswith(".yml") else args.name
    if not name or "/" in name or name.startswith("."):
        raise UsageError(
            "play takes a playbook's name in playbooks/ (registry_gc, driver_upgrade, ...), not %r" % args.name
        )
    path = need(project, "playbooks/%s.yml" % name, "play %s" % name)
    return run_playbook("play %s" % name, options(args, project), path)


def _absolute(value: str) -> str:
    return str(pathlib.Path(value).expanduser().absolute())


def cmd_bundle(args, project):
    if args.bundle_command not in ("build", "verify"):
        raise UsageError("bundle needs an action: build or verify")
    if args.bundle_command == "build":
        if bool(args.update_base) != bool(args.update_dir):
            raise UsageError("bundle build: --update-base and --update-dir go together (the update is written to "
                             "--update-dir, against --update-base)")
        path = need(project, "playbooks/bundle.yml", "bundle build")
        opts = options(args, project)
        given = {"bundle_dir": args.dir, "bundle_signing_key": args.signing_key,
                 "bundle_update_base": args.update_base, "bundle_update_dir": args.update_dir}
        chosen = {name: _absolute(value) for name, value in given.items() if value}
        if chosen:
            opts.extra_vars = [*opts.extra_vars, json.dumps(chosen)]
        return run_playbook("bundle build", opts, path)

    path = need(project, "playbooks/bundle_verify.yml", "bundle verify")
    bundle = pathlib.Path(args.path).expanduser().absolute()
    if not (bundle / "manifest.json").is_file():
        raise UsageError("bundle verify: %s is not a bundle (no manifest.json there)" % bundle)
    if not pathlib.Path(args.public_key).expanduser().is_file():
        raise UsageError("bundle verify: the public key %s is not a file" % args.public_key)
    if bool(args.base) != bool(args.apply_dir):
        raise UsageError("bundle verify: --base and --apply-dir go together (an update bundle is applied onto --base "
                         "into --apply-dir, then verified whole)")
    chosen = {"fleet_bundle": str(bundle), "fleet_bundle_public_key": _absolute(args.public_key)}
    if args.base:
        chosen.update(fleet_bundle_base=_absolute(args.base), fleet_bundle_apply_dir=_absolute(args.apply_dir))
    opts = options(args, project)
    opts.extra_vars = [*opts.extra_vars, json.dumps(chosen)]
    announce("bundle verify", path, opts)
    outcome = execute(opts, "bundle verify", playbook=path, emit=out)
    # The verify entry point's report (id, files, size, what it carries), or the whole refusal (the summary cuts
    # messages to a line; this one names the file that failed, after the bundle's path).
    for data in outcome.tracker.results:
        msg = (data.get("res") or {}).get("msg")
        if msg and (data.get("_outcome") == "failed" or data.get("task") == "Report the verified bundle"):
            out(" ".join(str(msg).split()))
    return report("bundle verify", outcome)


def cmd_audit(args, project):
    if args.audit_command != "verify":
        raise UsageError("audit needs an action: verify")
    script = project / "scripts" / "audit-verify"
    if not script.is_file():
        raise UsageError("audit verify needs scripts/audit-verify, which %s does not have" % project)
    log, key = audit_settings(project)
    log, key = args.log or log, args.key_file or key
    if not key:
        raise UsageError(
            "audit verify: no key (pass --key-file, set AUTOGLM_AUDIT_KEY_FILE or [callback_audit] key_file)"
        )
    argv = [sys.executable, str(script), log, "--key-file", key]
    if args.expect_last:
        argv += ["--expect-last", args.expect_last]
    rc = subprocess.run(argv, check=False).returncode
    # audit-verify: 0 intact, 2 usage, 1/3/4/5 a finding (edited, chain broken, cut, wrong key): see its message.
    return EXIT_OK if rc == 0 else EXIT_USAGE if rc == 2 else EXIT_FAILED


def cmd_status(args, project):
    opts = options(args, project)
    path = need(project, "playbooks/status.yml", "status")
    if not args.json:
        out("status: %s on %s" % (path, opts.inventory))
    outcome = execute(opts, "status", playbook=path, emit=out, progress=False)
    statuses = status.statuses_from_results(outcome.tracker.results)
    why = status.failures_from_results(outcome.tracker.results)
    hosts = sorted(set(outcome.tracker.hosts) | set(statuses))
    log, _key = audit_settings(project)
    last = status.last_runs(log, hosts)
    rows = [status.host_row(h, statuses.get(h), last.get(h), why.get(h)) for h in hosts]
    ok = outcome.exit_code == EXIT_OK and rows and all(r["reachable"] for r in rows)
    code = EXIT_OK if ok else EXIT_FAILED
    if args.json:
        print(json.dumps(rows, indent=1, sort_keys=True))
        return code
    if rows:
        out(status.render(rows))
    else:
        out("no hosts answered")
    if code != EXIT_OK and not outcome.tracker.failed_hosts and outcome.rc != 0:
        out("ansible-playbook ended with status %s; the end of its output:" % outcome.rc)
        for line in outcome.stdout_tail().splitlines():
            out("  | " + line)
    out("artifacts: %s" % outcome.artifact_dir)
    return code


COMMANDS = {
    "up": cmd_up,
    "status": cmd_status,
    "rollout": cmd_rollout,
    "rollback": cmd_rollback,
    "preflight": cmd_preflight,
    "play": cmd_play,
    "bundle": cmd_bundle,
    "audit": cmd_audit,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        project = find_project(getattr(args, "project", None))
        if args.version:
            out("autoglm-fleet %s (collection autoglm.fleet %s at %s)" % (
                _package_version(), collection_version(project), project))
            return EXIT_OK
        if not args.command:
            parser.print_usage(sys.stderr)
            err("autoglm-fleet: error: a command is required "
                "(up, status, rollout, rollback, preflight, play, bundle, audit)")
            return EXIT_USAGE
        return COMMANDS[args.command](args, project)
    except UsageError as exc:
        err("autoglm-fleet: error: %s" % exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("autoglm-fleet: interrupted")
        return 130


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("autoglm-fleet")
    except Exception:
        return "(not installed)"
