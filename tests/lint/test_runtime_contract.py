"""The runtime contract (docs/runtime.md): one entry point works the runtime paths out, every other role reads them.

- the runtime role's `facts` entry point sets the facts docs/runtime.md and its argument spec list, no more, no less;
- no other role, and no playbook, works a runtime path out (runtime_root, the host's local fact, /opt/autoglm)
  or sets a runtime fact;
- every role that reads a runtime fact includes the `facts` entry point (with defaults_from: facts);
- the fallback root of the `facts` entry point is runtime_root's documented default.
"""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "roles" / "runtime"
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir() and p.name != "runtime")
ROLE_DIRS = ("tasks", "vars", "defaults", "handlers", "templates")

# What a role other than runtime must not use: the runtime role's input, the host's record, the default root.
FORBIDDEN = re.compile(r"\bruntime_root\b(?!_dir)|ansible_local|autoglm_runtime|/opt/autoglm")
# The one use of runtime_root allowed outside the runtime role: the `when` of every include of the facts entry point,
# which skips an include that would set the same facts again (docs/runtime.md).
GUARD = "_runtime_facts_root is undefined or runtime_root | default(runtime_root_dir) != _runtime_facts_root"
GUARD_LINE = "when: " + GUARD
FACT = re.compile(r"\bruntime_[a-z_]+_(?:dir|interpreter)\b")


def _load(path):
    with path.open() as f:
        return yaml.safe_load(f)


def _set_facts():
    tasks = _load(RUNTIME / "tasks" / "facts.yml")
    names = set()
    for task in tasks:
        names |= set(task.get("ansible.builtin.set_fact", {}))
    # _runtime_facts_root: internal, the root the facts were resolved for (the includes' `when` reads it).
    return {name for name in names if not name.startswith("_")}


def _files(role):
    for sub in ROLE_DIRS:
        yield from sorted(p for p in (role / sub).rglob("*") if p.is_file())


def _facts_includes(paths):
    """Every include of the runtime facts entry point in these task files, as (path, task)."""

    def walk(tasks):
        for task in tasks or []:
            if not isinstance(task, dict):
                continue
            inc = task.get("ansible.builtin.include_role") or {}
            if inc.get("name") == "autoglm.fleet.runtime" and inc.get("tasks_from") == "facts":
                yield task
            for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks"):
                yield from walk(task.get(key))

    for path in paths:
        for task in walk(_load(path)):
            yield path, task


def _includes_facts(role):
    for path in sorted((role / "tasks").glob("*.yml")):
        for task in _load(path) or []:
            inc = task.get("ansible.builtin.include_role") or {}
            if (inc.get("name") == "autoglm.fleet.runtime" and inc.get("tasks_from") == "facts"
                    and inc.get("defaults_from") == "facts"):
                return True
    return False


def test_the_facts_entry_point_sets_the_documented_facts():
    facts = _set_facts()
    assert "runtime_python_interpreter" in facts and "runtime_root_dir" in facts, facts
    doc_table = set(re.findall(r"^\| `(runtime_[a-z_]+)` \|", (ROOT / "docs" / "runtime.md").read_text(), re.M))
    assert doc_table == facts, "docs/runtime.md's table and tasks/facts.yml differ: %s" % (doc_table ^ facts)
    spec = _load(RUNTIME / "meta" / "argument_specs.yml")["argument_specs"]["facts"]
    described = set(FACT.findall(" ".join(spec["description"])))
    assert described == facts, "argument_specs facts description and tasks/facts.yml differ: %s" % (described ^ facts)


def test_the_local_fact_records_every_runtime_fact():
    local = _load(RUNTIME / "vars" / "main.yml")["_runtime_local_fact"]
    recorded = {v.strip("{} ") for k, v in local.items() if k != "packages"}
    assert recorded == _set_facts()


def test_the_fallback_root_is_runtime_roots_default():
    default = _load(RUNTIME / "defaults" / "main.yml")["runtime_root"]
    assert _load(RUNTIME / "vars" / "main.yml")["_runtime_default_root"] == default
    assert _load(RUNTIME / "defaults" / "facts.yml") == {}, "defaults/facts.yml must leave runtime_root unset"


def test_only_the_facts_entry_point_sets_runtime_facts():
    facts = _set_facts()
    offenders = []
    paths = [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("roles/*/handlers/*.yml"), *ROOT.glob("playbooks/**/*.yml")]
    for path in paths:
        if path == RUNTIME / "tasks" / "facts.yml":
            continue
        for name in facts:
            if re.search(r"^\s+%s:" % name, path.read_text(), re.M):
                offenders.append("%s sets %s" % (path.relative_to(ROOT), name))
    assert not offenders, offenders


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_no_role_works_out_a_runtime_path(role):
    hits = []
    for path in _files(role):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if FORBIDDEN.search(line) and line.strip() != GUARD_LINE:
                hits.append("%s:%d: %s" % (path.relative_to(ROOT), n, line.strip()))
    assert not hits, "read the runtime facts instead (docs/runtime.md):\n" + "\n".join(hits)


def test_no_playbook_works_out_a_runtime_path():
    hits = []
    for path in sorted((ROOT / "playbooks").rglob("*.yml")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if FORBIDDEN.search(line) and line.strip() != GUARD_LINE:
                hits.append("%s:%d: %s" % (path.relative_to(ROOT), n, line.strip()))
    assert not hits, hits


def _reads_facts(role):
    return sorted({m for path in _files(role) for m in FACT.findall(path.read_text())})


READERS = [role for role in ROLES if _reads_facts(role)]


def test_the_roles_that_need_the_runtime_read_its_facts():
    expected = {"preflight", "registry", "model_image", "model_weights", "model_serve", "docker", "nvidia_driver"}
    assert {r.name for r in READERS} >= expected


@pytest.mark.parametrize("role", READERS, ids=lambda p: p.name)
def test_a_role_that_reads_runtime_facts_includes_the_entry_point(role):
    assert _includes_facts(role), (
        "%s reads %s but never includes autoglm.fleet.runtime tasks_from: facts, defaults_from: facts"
        % (role.name, _reads_facts(role))
    )


def test_every_include_of_the_entry_point_skips_a_second_resolution_the_same_way():
    paths = [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("playbooks/**/*.yml")]
    found = list(_facts_includes(p for p in paths if p.parent != RUNTIME / "tasks"))
    assert len(found) >= 15, len(found)
    wrong = ["%s: %s" % (path.relative_to(ROOT), task.get("name")) for path, task in found
             if task.get("when") != GUARD or task["ansible.builtin.include_role"].get("defaults_from") != "facts"]
    assert not wrong, "include the facts entry point with defaults_from: facts and when: %s\n%s" % (GUARD, wrong)
