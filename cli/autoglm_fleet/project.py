"""Where things are: the project (a checkout of the collection), its playbooks, the inventory, the artifacts."""

from __future__ import annotations

import configparser
import os
import pathlib
import re

DEFAULT_INVENTORY = "inventories/lab"


class UsageError(Exception):
    """What the command needs is not there, or was asked wrongly: exit code 2, with this message."""


def is_project(path: pathlib.Path) -> bool:
    return (path / "galaxy.yml").is_file() and (path / "playbooks" / "site.yml").is_file()


def find_project(explicit: str | None = None, cwd: pathlib.Path | None = None) -> pathlib.Path:
    """The checkout whose playbooks the CLI runs: --project, $AUTOGLM_FLEET_PROJECT, the current directory or one
    above it, or the checkout this package is installed from (``pip install -e cli``)."""
    given = explicit or os.environ.get("AUTOGLM_FLEET_PROJECT")
    if given:
        path = pathlib.Path(given).expanduser().resolve()
        if not is_project(path):
            raise UsageError(
                "%s is not a checkout of autoglm.fleet (no galaxy.yml and playbooks/site.yml there); "
                "fix --project or AUTOGLM_FLEET_PROJECT" % path
            )
        return path
    here = (cwd or pathlib.Path.cwd()).resolve()
    for path in [here, *here.parents]:
        if is_project(path):
            return path
    installed = pathlib.Path(__file__).resolve().parents[2]
    if is_project(installed):
        return installed
    raise UsageError(
        "no autoglm.fleet checkout found from %s upwards; run autoglm-fleet inside the checkout or pass --project DIR"
        % here
    )


def collection_version(project: pathlib.Path) -> str:
    """The collection's version: the ``version:`` line of galaxy.yml (the one place it lives)."""
    match = re.search(r"^version:\s*['\"]?([^'\"\s]+)", (project / "galaxy.yml").read_text(), re.MULTILINE)
    return match.group(1) if match else "unknown"


def resolve_inventory(project: pathlib.Path, given: str | None) -> str:
    """An inventory path (absolute), or a comma-separated host list as ansible takes it."""
    value = given or os.environ.get("AUTOGLM_FLEET_INVENTORY") or str(project / DEFAULT_INVENTORY)
    if "," in value and not os.path.exists(value):
        return value  # "host1,host2,": a host list
    path = pathlib.Path(value).expanduser()
    if not path.is_absolute():
        path = pathlib.Path.cwd() / path
    if not path.exists():
        raise UsageError("inventory %s does not exist; pass -i with an inventory file or directory" % value)
    return str(path.resolve())


def playbook(project: pathlib.Path, relative: str, what: str, missing_hint: str = "") -> str:
    """A playbook of the project by its path; a clear usage error when this checkout lacks it."""
    if not (project / relative).is_file():
        raise UsageError(
            "%s needs %s, which this checkout (%s) does not have%s"
            % (what, relative, project, (": " + missing_hint) if missing_hint else "")
        )
    return relative


def ansible_cfg(project: pathlib.Path) -> pathlib.Path | None:
    env = os.environ.get("ANSIBLE_CONFIG")
    if env:
        return pathlib.Path(env).expanduser().resolve()
    cfg = project / "ansible.cfg"
    return cfg if cfg.is_file() else None


def audit_settings(project: pathlib.Path) -> tuple[str | None, str | None]:
    """The audit log and key as the autoglm.fleet.audit callback finds them: $AUTOGLM_AUDIT_LOG and
    $AUTOGLM_AUDIT_KEY_FILE, else ``[callback_audit]`` in ansible.cfg (relative to that file), else the
    callback's default log ``~/.ansible/autoglm-audit.log`` and no key."""
    log = os.environ.get("AUTOGLM_AUDIT_LOG")
    key = os.environ.get("AUTOGLM_AUDIT_KEY_FILE")
    cfg_path = ansible_cfg(project)
    if cfg_path is not None and cfg_path.is_file():
        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
        parser.read(cfg_path)
        section = parser["callback_audit"] if parser.has_section("callback_audit") else {}
        base = cfg_path.parent
        if not log and section.get("log"):
            log = str((base / os.path.expanduser(section["log"])).resolve())
        if not key and section.get("key_file"):
            key = str((base / os.path.expanduser(section["key_file"])).resolve())
    if not log:
        log = os.path.expanduser("~/.ansible/autoglm-audit.log")
    return log, key


def artifacts_root(project: pathlib.Path, given: str | None) -> pathlib.Path:
    """ansible-runner's private data directory: --artifacts, $AUTOGLM_FLEET_ARTIFACTS, or <project>/.cache/fleet-runs.
    Each run's artifacts go to <root>/artifacts/<ident>/ (stdout, job_events/, and our summary.json)."""
    value = given or os.environ.get("AUTOGLM_FLEET_ARTIFACTS") or str(project / ".cache" / "fleet-runs")
    root = pathlib.Path(value).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root
