"""Bad input to the model_serve role's rollout fails before anything changes, naming every variable and the fix.

One real ansible-playbook run, in check mode, against this machine (connection local) with a runtime root in a
temporary directory: the role's preflight refuses out-of-range rollout settings (all of them in one message), and the
`rollback_target` entry point (playbooks/rollback.yml's first play) refuses a digest that is not recorded, a host with
one version only, and a version whose weights are gone, naming what is recorded. Each case runs inside block/rescue;
the messages go to a JSON file this test reads. Nothing is pulled, started or written: every case fails in argument
validation or a gate, before the first change.
"""

from __future__ import annotations

import json

from support.bad_input import recorded_case, write_messages

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64

GOOD = {
    "model_serve_image": "registry.example:5000/autoglm/model-server",
    "model_serve_digest": DIGEST_A,
    "model_serve_api_key": "unit-test-key",
    "model_serve_cpu_mode": True,
}

# (case, entry point, role variables)
CASES = [
    ("every_rollout_setting_out_of_range", "main", {
        "model_serve_rollout_steps": [50, 10],
        "model_serve_analysis_interval": 0,
        "model_serve_analysis_iterations": 0,
        "model_serve_analysis_min_requests": 0,
        "model_serve_analysis_max_error_ratio": 1.5,
        "model_serve_analysis_max_latency_seconds": -1,
        "model_serve_analysis_latency_quantile": 0,
        "model_serve_probe_concurrency": 0,
        "model_serve_gpu_memory_factor": 0.5,
        "model_serve_front_client_max_body_size": "lots",
        "model_serve_blue_port": 8000,
        "model_serve_state_history": 1,
    }),
    ("steps_that_never_reach_100", "main", {"model_serve_rollout_steps": [10, 50]}),
    ("steps_beyond_100", "main", {"model_serve_rollout_steps": [10, 150]}),
    ("unknown_strategy", "main", {"model_serve_rollout_strategy": "canary"}),
    ("rollback_to_a_digest_not_recorded", "rollback_target", {"model_serve_rollback_to": DIGEST_C}),
    ("rollback_to_a_version_whose_weights_are_gone", "rollback_target", {"model_serve_rollback_to": DIGEST_B}),
    ("rollback_to_a_malformed_digest", "rollback_target", {"model_serve_rollback_to": "latest"}),
]


def _playbook(results, weights, gone):
    tasks = []
    for name, entry, role_vars in CASES:
        include = {"name": "autoglm.fleet.model_serve"}
        if entry != "main":
            include["tasks_from"] = entry
        tasks.append(recorded_case(name, [
            {"name": "Run model_serve %s" % entry, "ansible.builtin.include_role": include,
             "vars": dict(GOOD, model_serve_weights_path=str(weights), **role_vars)}]))
    tasks.append(write_messages(results))
    return [{"name": "Bad input", "hosts": "all", "gather_facts": False, "vars": {"_messages": {}}, "tasks": tasks}]


def _state(weights, gone):
    entry = {"colour": "blue", "image": GOOD["model_serve_image"], "weights_revision": "r1"}
    return {"schema": 2, "live": "blue",
            "current": dict(entry, digest=DIGEST_A, weights_path=str(weights), container_id="1"),
            "history": [dict(entry, digest=DIGEST_A, weights_path=str(weights), container_id="1"),
                        dict(entry, digest=DIGEST_B, weights_path=str(gone), weights_revision="r0", container_id="2")]}


def test_bad_rollout_input_fails_before_any_change(tmp_path, ansible_playbook):
    root = tmp_path / "root"
    (root / "state").mkdir(parents=True)
    weights = tmp_path / "weights"
    weights.mkdir()
    gone = tmp_path / "weights-removed"
    (root / "state" / "model_serve.json").write_text(json.dumps(_state(weights, gone)))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    results = tmp_path / "messages.json"
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(_playbook(results, weights, gone)))

    proc = ansible_playbook(playbook, "--check", "-i", "gpu-host-under-test,", "-e", "ansible_connection=local",
                            "-e", "runtime_root=%s" % root)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    msgs = json.loads(results.read_text())
    assert sorted(msgs) == sorted(case[0] for case in CASES), msgs

    # Every out-of-range setting in one message, each named with what to set.
    msg = msgs["every_rollout_setting_out_of_range"]
    assert msg.startswith("model_serve preflight failed on gpu-host-under-test"), msg
    for expected in [
        "model_serve_rollout_steps must be increasing percentages of traffic from 1 to 100 that end with 100, "
        "e.g. [10, 50, 100] or [100] (it is [50, 10])",
        "model_serve_analysis_interval must be positive seconds between scrapes, e.g. 30 (it is 0",
        "model_serve_analysis_iterations must be 1 or more analysis windows, e.g. 5 (it is 0)",
        "model_serve_analysis_min_requests must be 1 or more requests per window",
        "model_serve_analysis_max_error_ratio must be a ratio from 0 to 1: 0.05 means 5 % of 5xx answers (it is 1.5)",
        "model_serve_analysis_max_latency_seconds must be positive seconds, e.g. 1.0 (it is -1",
        "model_serve_analysis_latency_quantile must be in (0, 1]: 0.95 is P95 (it is 0",
        "model_serve_probe_concurrency and model_serve_probe_max_tokens must be 1 or more (they are 0 and 8)",
        "model_serve_gpu_memory_factor 1 or more (they are 0 and 0.5)",
        "model_serve_front_client_max_body_size must be an nginx size such as 64m",
        "model_serve_port, model_serve_blue_port and model_serve_green_port must be three different TCP ports "
        "(they are 8000, 8000, 8002)",
        "model_serve_state_history must keep 2 or more deployments",
    ]:
        assert expected in msg, "%r not in %s" % (expected, msg)
    assert "(it is [10, 50])" in msgs["steps_that_never_reach_100"]
    assert "(it is [10, 150])" in msgs["steps_beyond_100"]
    assert msgs["unknown_strategy"].startswith("Validation of arguments failed"), msgs["unknown_strategy"]
    assert "model_serve_rollout_strategy must be one of: auto, blue_green, drain_replace" in msgs["unknown_strategy"]

    # Rollback: what is recorded is named; a version whose weights are gone is refused with how to get them back.
    msg = msgs["rollback_to_a_digest_not_recorded"]
    assert msg.startswith("rollback refused on gpu-host-under-test"), msg
    assert "%s is not in the recorded history; recorded (newest first): %s weights r1; %s weights r0" % (
        DIGEST_C, DIGEST_A, DIGEST_B) in msg, msg
    msg = msgs["rollback_to_a_version_whose_weights_are_gone"]
    assert "the weights of %s (%s, revision r0) are gone from this host" % (DIGEST_B, gone) in msg, msg
    assert "rollback_to must read sha256: followed by 64 hex digits (it is 'latest')" in msgs[
        "rollback_to_a_malformed_digest"]

    # Nothing was written under the temporary directory but the playbook, its config and the messages.
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert set(after) - set(before) == {p.relative_to(tmp_path) for p in (results, playbook, tmp_path / "ansible.cfg")}


def test_a_host_with_one_recorded_version_has_nothing_to_roll_back_to(tmp_path, ansible_playbook):
    root = tmp_path / "root"
    (root / "state").mkdir(parents=True)
    state = _state(tmp_path, tmp_path)
    state["history"] = state["history"][:1]
    (root / "state" / "model_serve.json").write_text(json.dumps(state))
    playbook = tmp_path / "play.yml"
    choose = {"name": "Choose",
              "ansible.builtin.include_role": {"name": "autoglm.fleet.model_serve", "tasks_from": "rollback_target"}}
    playbook.write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": [choose]}]))
    proc = ansible_playbook(playbook, "-i", "gpu-host-under-test,", "-e", "ansible_connection=local",
                            "-e", "runtime_root=%s" % root)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "only one version is recorded (%s weights r1): there is no previous one to return to" % DIGEST_A \
        in proc.stdout, proc.stdout[-3000:]
