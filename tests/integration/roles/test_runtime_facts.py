"""The runtime contract's entry point (autoglm.fleet.runtime, tasks_from: facts) as roles include it.

One real ansible-playbook run against this machine (connection local), in check mode and with --tags naming only
the includes, as `site.yml --tags registry` would: the entry point's tasks must run anyway. Each case is a host of
its own (all of them this machine), whose local facts are read from a temporary fact_path (module_defaults), never
from /etc/ansible/facts.d; it writes the runtime facts it got to a JSON file this test reads.
"""

from __future__ import annotations

import json

import yaml

FACTS = [
    "runtime_root_dir",
    "runtime_venv_dir",
    "runtime_python_interpreter",
    "runtime_models_dir",
    "runtime_state_dir",
    "runtime_bundle_dir",
    "runtime_certs_dir",
    "runtime_secrets_dir",
    "runtime_build_dir",
]

# (case, host's recorded root or None, variables of the include, a runtime_root_dir set earlier in the run)
CASES = [
    ("default", None, {}, None),
    ("recorded", "/srv/recorded", {}, None),
    ("explicit_wins_over_recorded", "/srv/recorded", {"runtime_root": "/srv/explicit"}, None),
    ("this_run_wins_over_recorded", "/srv/recorded", {}, "/srv/earlier"),
    ("explicit_wins_over_this_run", "/srv/recorded", {"runtime_root": "/srv/explicit"}, "/srv/earlier"),
]
BAD = [("relative", {"runtime_root": "srv/autoglm"}), ("slash", {"runtime_root": "/"})]


def _playbook(tmp_path):
    plays = []
    for name, recorded, include_vars, earlier in CASES:
        fact_dir = tmp_path / ("facts-" + name)
        fact_dir.mkdir()
        if recorded:
            (fact_dir / "autoglm_runtime.fact").write_text(json.dumps({"root": recorded}))
        tasks = []
        if earlier:
            tasks.append({"name": "An earlier role of this run set the root",
                          "ansible.builtin.set_fact": {"runtime_root_dir": earlier}, "tags": ["t"]})
        tasks += [
            {"name": "Include the entry point", "ansible.builtin.include_role": {
                "name": "autoglm.fleet.runtime", "tasks_from": "facts", "defaults_from": "facts"},
             "vars": include_vars, "tags": ["t"]},
            {"name": "Write what it set", "ansible.builtin.copy": {
                "dest": str(tmp_path / (name + ".json")),
                "content": "{{ dict(%s | zip(%s | map('extract', vars))) | to_json }}" % (FACTS, FACTS),
                "mode": "0644"},
             "check_mode": False, "tags": ["t"]},
        ]
        plays.append({"name": name, "hosts": name, "gather_facts": False, "tasks": tasks,
                      "module_defaults": {"ansible.builtin.setup": {"fact_path": str(fact_dir)}}})
    for name, include_vars in BAD:
        plays.append({"name": name, "hosts": name, "gather_facts": False, "tasks": [{
            "name": "Include the entry point with a bad root", "tags": ["t"],
            "block": [{"name": "Include", "ansible.builtin.include_role": {
                "name": "autoglm.fleet.runtime", "tasks_from": "facts", "defaults_from": "facts"},
                "vars": include_vars, "tags": ["t"]}],
            "rescue": [{"name": "Write the failure", "ansible.builtin.copy": {
                "dest": str(tmp_path / (name + ".json")),
                "content": "{{ {'msg': ansible_failed_result.msg} | to_json }}", "mode": "0644"},
                "check_mode": False, "tags": ["t"]}],
        }]})
    (tmp_path / "hosts").write_text("".join("%s ansible_connection=local\n" % play["name"] for play in plays))
    path = tmp_path / "playbook.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return path


def _facts_for(root):
    return {
        "runtime_root_dir": root,
        "runtime_venv_dir": root + "/venv",
        "runtime_python_interpreter": root + "/venv/bin/python",
        "runtime_models_dir": root + "/models",
        "runtime_state_dir": root + "/state",
        "runtime_bundle_dir": root + "/bundle",
        "runtime_certs_dir": root + "/certs",
        "runtime_secrets_dir": root + "/secrets",
        "runtime_build_dir": root + "/build",
    }


def test_the_entry_point_resolves_the_root_in_order(tmp_path, ansible_playbook):
    playbook = _playbook(tmp_path)
    run = ansible_playbook(playbook, "-i", str(tmp_path / "hosts"), "--check", "--tags", "t")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    got = {name: json.loads((tmp_path / (name + ".json")).read_text()) for name, *_rest in CASES}
    assert got == {
        "default": _facts_for("/opt/autoglm"),
        "recorded": _facts_for("/srv/recorded"),
        "explicit_wins_over_recorded": _facts_for("/srv/explicit"),
        "this_run_wins_over_recorded": _facts_for("/srv/earlier"),
        "explicit_wins_over_this_run": _facts_for("/srv/explicit"),
    }
    for name, include_vars in BAD:
        msg = json.loads((tmp_path / (name + ".json")).read_text())["msg"]
        assert "must be an absolute path other than /" in msg, (name, msg)
        assert "'%s'" % include_vars["runtime_root"] in msg and "from runtime_root" in msg, (name, msg)
