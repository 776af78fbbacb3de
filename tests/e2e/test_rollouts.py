"""Blue-green rollouts on the e2e lab, under continuous client traffic (issue 15). Run by tests/e2e/rollouts.sh after
the lab is up and serving the published version (lab/scripts/e2e.sh); the stories run in this order and each starts
from where the one before left the fleet.

Real parts only: real ansible-playbook runs of site.yml and playbooks/rollback.yml against the lab hosts, a real
client (tests/e2e_tooling/load.py) sending streamed and non-streamed requests through every host's nginx front
during every case and counting failures, test images built FROM the published image on the build host and pushed
to the lab registry (tests/e2e_tooling/images.py; the faults live only in those images), and the hosts' own records
and Docker engines.

1. a good new version: 0 failed requests; the new digest serves; the old colour is gone; the canary went first, alone;
   a second run changes nothing and, as every host already serves the version, rolls out in one batch
2. a version answering 500 to half its requests: rolled back automatically on the canary; the other host never
   changes (no task of the rollout play runs there, weights included); failed requests bounded by the traffic the
   new colour had in its analysis
3. a slow version (P95 above 1 s): the rollout halts with the old version serving
4. playbooks/rollback.yml, through `autoglm-fleet rollback`: back to the previous digest with 0 failed requests
5. bad input (thresholds out of range, a digest the registry lacks, a rollback to an unrecorded digest): refused
   before anything changes
6. an update bundle (a new model server image and the model's revision r2, built on the connected side against the
   site's current bundle: lab/scripts/bundle.sh --update) applied to the running offline site through the normal
   rollout (blue-green, the lab's probe load): it carries only what changed; the new digest and r2 serve (a second
   run is not repeated here: lab.yml's second run from the full bundle and story 1's already check that)
The counts and timings are printed and written to .cache/e2e/rollouts-summary.json (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# The tooling lives outside tests/e2e: that directory is also the e2e lab's inventory, and Ansible reads every file in
# an inventory directory (a Python file whose first line is a one-line docstring became a host there).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from e2e_tooling import images
from e2e_tooling.lab import LOGS, ROOT, Lab, batches, changed, failed_messages, tasks_run_on
from e2e_tooling.load import Load

ROLLOUT_PLAY = "Roll out the model"
ROLLBACK_PLAY = "Roll back to the recorded version"
SUMMARY = {}


@pytest.fixture(scope="module")
def lab():
    return Lab()


@pytest.fixture(scope="module")
def published(lab):
    return lab.state(lab.build_host, "model_image")


@pytest.fixture(scope="module")
def digests(lab, published):
    """The published digest (v1, what the lab serves) and the test images' digests."""
    out = {"v1": published["digest"]}
    start = time.monotonic()
    for variant in images.VARIANTS:
        out[variant] = images.build_and_push(lab.build_host, published["reference"], published["repository"], variant)
    assert len(set(out.values())) == len(out), out
    SUMMARY["0_test_images"] = {"seconds": round(time.monotonic() - start, 1), "variants": sorted(images.VARIANTS)}
    print("\ntest images %s built and pushed in %.0f s" % (sorted(images.VARIANTS), time.monotonic() - start))
    return out


def load_for(lab):
    return Load({host: (lab.address(host), 8000) for host in lab.gpu_hosts}, lab.api_key)


def snapshot(lab):
    """What must not change on a host that a rollout leaves alone."""
    return {host: {"state": lab.state_bytes(host), "containers": lab.containers(host),
                   "weights": lab.weights_listing(host)} for host in lab.gpu_hosts}


def report_counts(case, load, seconds, **extra):
    counts = load.counts()
    SUMMARY[case] = {"seconds": round(seconds, 1), "clients": counts, **extra}
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / "rollouts-summary.json").write_text(json.dumps(SUMMARY, indent=2) + "\n")
    print("\n%s: playbook %.0f s; requests through the fronts: %s" % (case, seconds, json.dumps(counts)))
    return counts


def test_the_fleet_serves_the_published_version_blue_green(lab, published):
    for host in lab.gpu_hosts:
        colour, container = lab.live(host)
        assert container["Config"]["Labels"]["ai.autoglm.image.digest"] == published["digest"]
        assert lab.front_status(host)["weights"] == {colour: 100}
        assert list(lab.containers(host)) == ["autoglm-model-server-" + colour]


def test_1_a_good_version_rolls_out_with_no_failed_request(lab, digests):
    before = {host: lab.live(host)[0] for host in lab.gpu_hosts}
    with load_for(lab) as load:
        rc, seconds, report = lab.playbook("1-good", "site.yml", "--tags", "model_weights,model_serve",
                                           "-e", "model_serve_digest=" + digests["good"])
    counts = report_counts("1_good_version", load, seconds)
    assert rc == 0, failed_messages(report)
    for host in lab.gpu_hosts:
        assert counts[host]["failed"] == 0, (host, counts[host], [vars(r) for r in load.failures(host)][:5])
        assert counts[host]["streams"] > 0 and counts[host]["requests"] > 20, counts[host]
        colour, container = lab.live(host)
        assert colour != before[host]
        assert container["Config"]["Labels"]["ai.autoglm.image.digest"] == digests["good"]
        assert list(lab.containers(host)) == ["autoglm-model-server-" + colour], "the old colour is not gone"
        assert lab.front_status(host)["weights"] == {colour: 100}
        state = lab.state(host)
        assert state["current"]["digest"] == digests["good"] and state["history"][1]["digest"] == digests["v1"]
        # The clients saw both colours during the rollout, and the new one at the end.
        assert set(counts[host]["colours"]) >= {colour, before[host]}, counts[host]
    # A new version: the canary alone first, then the other hosts in later batches.
    rollout = batches(report, ROLLOUT_PLAY)
    assert rollout[0] == sorted(lab.canary) and len(rollout) > 1, rollout
    assert sorted(h for batch in rollout for h in batch) == sorted(lab.gpu_hosts), rollout


def test_1_a_second_run_of_the_unchanged_rollout_changes_nothing(lab, digests):
    before = snapshot(lab)
    rc, seconds, report = lab.playbook("1-again", "site.yml", "--tags", "model_weights,model_serve",
                                       "-e", "model_serve_digest=" + digests["good"])
    assert rc == 0, failed_messages(report)
    assert set(changed(report).values()) == {0}, changed(report)
    assert snapshot(lab) == before
    # Every host already serves this version: the plan found nothing to guard, so one batch of every host.
    assert batches(report, ROLLOUT_PLAY) == [sorted(lab.gpu_hosts)], batches(report, ROLLOUT_PLAY)
    SUMMARY["1_second_run"] = {"seconds": round(seconds, 1), "changed": changed(report)}
    print("\nsecond run: %.0f s, changed %s" % (seconds, changed(report)))


def refused_on_canary(lab, digests, variant, run, case):
    """Roll out a test variant the canary's analysis must refuse, under client traffic: (canary, other hosts,
    snapshot before, live colour before, load, counts, report, the canary's last failure message). The run fails
    (rc 2) on the canary alone."""
    canary, others = lab.canary[0], [h for h in lab.gpu_hosts if h not in lab.canary]
    before = snapshot(lab)
    live_before = lab.live(canary)[0]
    with load_for(lab) as load:
        rc, seconds, report = lab.playbook(run, "site.yml", "--tags", "model_weights,model_serve",
                                           "-e", "model_serve_digest=" + digests[variant])
    counts = report_counts(case, load, seconds)
    assert rc == 2, "the %s version was not refused" % variant
    messages = failed_messages(report)
    assert set(messages) == {canary}, messages
    return canary, others, before, live_before, load, counts, report, messages[canary][-1]


def test_2_a_version_answering_500_is_rolled_back_on_the_canary_and_goes_no_further(lab, digests):
    canary, others, before, live_before, load, counts, report, msg = refused_on_canary(
        lab, digests, "bad500", "2-bad500", "2_bad_version")
    assert "ROLLED BACK" in msg and "gate error_ratio" in msg and "rollback: 5xx ratio" in msg, msg
    print("\n%s: %s" % (canary, msg))

    # The canary: the old colour serves, untouched; the bad colour is gone; the attempt is recorded.
    assert lab.live(canary)[0] == live_before
    assert lab.containers(canary) == before[canary]["containers"]
    state = lab.state(canary)
    assert state["history"] == json.loads(before[canary]["state"])["history"]
    attempt = state["attempts"][0]
    assert (attempt["digest"], attempt["result"], attempt["gate"]) == (digests["bad500"], "rolled_back", "error_ratio")

    # The other hosts: no task of the rollout play ran there (weights included); nothing changed.
    for host in others:
        assert tasks_run_on(report, host, ROLLOUT_PLAY) == [], tasks_run_on(report, host, ROLLOUT_PLAY)
        assert snapshot(lab)[host] == before[host]
        assert counts[host]["failed"] == 0, counts[host]

    # The clients' failures: 500s of the new colour only, bounded by its share of the traffic during its analysis
    # (10 % at the first step). The test image answers 500 to every other generation request of all its callers,
    # the role's probe load included, so the client's part of those 500s is not half of its requests to the new
    # colour (it was 8 of 12 in one run), but never more than them.
    new_colour = "green" if live_before == "blue" else "blue"
    failures = load.failures(canary)
    assert all(f.status == 500 and f.colour == new_colour for f in failures), [vars(f) for f in failures][:5]
    to_new = counts[canary]["colours"].get(new_colour, 0)
    assert len(failures) <= to_new, (len(failures), to_new)
    assert to_new <= 0.1 * counts[canary]["requests"] + 5, counts[canary]
    SUMMARY["2_bad_version"].update(failed_on_canary=len(failures), served_by_new_colour=to_new, message=msg)


def test_3_a_slow_version_halts_with_the_old_version_serving(lab, digests):
    canary, others, before, live_before, _load, counts, report, msg = refused_on_canary(
        lab, digests, "slow", "3-slow", "3_slow_version")
    assert "HALTED" in msg and "gate latency" in msg and "halt: P95" in msg, msg
    print("\n%s: %s" % (canary, msg))
    colour, container = lab.live(canary)
    assert colour == live_before and container["Config"]["Labels"]["ai.autoglm.image.digest"] == digests["good"]
    assert lab.front_status(canary)["weights"] == {colour: 100}
    # The slow colour is stopped and kept for `docker logs`.
    kept = {name: c for name, c in lab.containers(canary).items() if not name.endswith("-" + colour)}
    assert [(c[1], c[4]) for c in kept.values()] == [(False, digests["slow"])], kept
    assert lab.state(canary)["attempts"][0]["result"] == "halted"
    for host in others:
        assert tasks_run_on(report, host, ROLLOUT_PLAY) == []
        assert snapshot(lab)[host] == before[host]
    for host in lab.gpu_hosts:
        assert counts[host]["failed"] == 0, (host, counts[host])
    SUMMARY["3_slow_version"]["message"] = msg


def test_4_rollback_returns_to_the_previous_digest_with_no_failed_request(lab, digests):
    # Through the operators' CLI (autoglm-fleet rollback runs playbooks/rollback.yml), as the runbook says.
    with load_for(lab) as load:
        rc, seconds, out = lab.fleet("4-rollback", "rollback")
    counts = report_counts("4_rollback", load, seconds)
    assert rc == 0, out[-3000:]
    summary = r"^rollback succeeded: %d host\(s\); artifacts: " % len(lab.gpu_hosts)
    assert re.search(summary, out, re.MULTILINE), out[-3000:]
    for host in lab.gpu_hosts:
        assert counts[host]["failed"] == 0, (host, counts[host], [vars(r) for r in load.failures(host)][:5])
        colour, container = lab.live(host)
        assert container["Config"]["Labels"]["ai.autoglm.image.digest"] == digests["v1"]
        assert list(lab.containers(host)) == ["autoglm-model-server-" + colour]
        state = lab.state(host)
        assert [h["digest"] for h in state["history"][:3]] == [digests["v1"], digests["good"], digests["v1"]]


def test_5_bad_input_is_refused_before_anything_changes(lab, digests):
    before = snapshot(lab)
    cases = {
        "5-thresholds": ("site.yml", "--tags", "model_weights,model_serve",
                         "-e", "model_serve_analysis_max_error_ratio=1.5",
                         "-e", '{"model_serve_rollout_steps": [50, 10]}'),
        "5-unknown-digest": ("site.yml", "--tags", "model_weights,model_serve",
                             "-e", "model_serve_digest=sha256:" + "0" * 64),
        "5-rollback-unrecorded": ("playbooks/rollback.yml", "-e", "rollback_to=" + digests["bad500"]),
    }
    # The three refused runs change nothing, so they run at once (each is mostly ansible-playbook's start and facts).
    start = time.monotonic()
    with ThreadPoolExecutor(len(cases)) as pool:
        runs = {name: pool.submit(lab.playbook, name, playbook, *args) for name, (playbook, *args) in cases.items()}
        results = {name: run.result() for name, run in runs.items()}
    seconds = time.monotonic() - start
    assert {name: rc for name, (rc, _seconds, _report) in results.items()} == dict.fromkeys(cases, 2), results.keys()
    seen = {name: failed_messages(report) for name, (_rc, _seconds, report) in results.items()}
    assert snapshot(lab) == before
    SUMMARY["5_bad_input"] = {"seconds": round(seconds, 1)}
    canary = lab.canary[0]
    msg = seen["5-thresholds"][canary][0]
    assert "model_serve_analysis_max_error_ratio must be a ratio from 0 to 1" in msg, msg
    assert "model_serve_rollout_steps must be increasing percentages" in msg, msg
    assert "cannot pull" in seen["5-unknown-digest"][canary][-1], seen["5-unknown-digest"]
    # The rollback refusal comes from every host's check, before any host changes, and names what is recorded.
    refused = seen["5-rollback-unrecorded"]
    assert set(refused) == set(lab.gpu_hosts), refused
    for host in lab.gpu_hosts:
        assert "is not in the recorded history; recorded (newest first): %s" % digests["v1"] in refused[host][0]
    print("\nbad input refused in %.0f s: %s"
          % (seconds, json.dumps({k: next(iter(v.values()))[0][:200] for k, v in seen.items()})))
    (LOGS / "rollouts-summary.json").write_text(json.dumps(SUMMARY, indent=2) + "\n")


def test_6_an_update_bundle_rolls_out_to_the_offline_site_with_no_failed_request(lab, digests):
    bundles = ROOT / ".cache" / "lab-bundle"
    start = time.monotonic()
    built = subprocess.run([str(ROOT / "lab/scripts/bundle.sh"), "--update"], cwd=ROOT,
                           capture_output=True, text=True, check=False, env=lab.env())
    build_seconds = time.monotonic() - start
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    update = json.loads((bundles / "update" / "manifest.json").read_text())
    full = json.loads((bundles / "next" / "manifest.json").read_text())
    shipped = sorted(p for p, e in update["files"].items() if e.get("in") != "base")
    assert update["kind"] == "update" and update["base"]["id"] == json.loads(
        (bundles / "bundle" / "manifest.json").read_text())["id"]
    # Only the new image and the new model revision travel; packages, wheels and the registry's image do not (were
    # Debian to publish a package update between the two builds, apt/ would rightly ship too: build again).
    assert "images/model-server.tar" in shipped and "images/registry.tar" not in shipped, shipped
    assert {p.split("/")[0] for p in shipped} == {"images", "models"}, shipped
    assert all(p.startswith("models/autoglm/tiny-lab/r2/") for p in shipped if p.startswith("models/")), shipped
    sizes = {"update_bytes": update["shipped"]["bytes"], "full_bytes": full["totals"]["bytes"],
             "update_files": update["shipped"]["files"], "full_files": full["totals"]["files"],
             "build_seconds": round(build_seconds, 1)}
    print("\nupdate bundle: %s" % json.dumps(sizes))

    applied = bundles / "applied"
    args = ("site.yml", "--tags", "registry,publish,model_weights,model_serve",
            "-e", "fleet_bundle=%s" % (bundles / "update"),
            "-e", "fleet_bundle_base=%s" % (bundles / "bundle"), "-e", "fleet_bundle_apply_dir=%s" % applied)
    # Without the test's clients (stories 1 and 4 count failed requests under traffic; here the lab's probe load drives
    # each analysis): the update's run is the e2e tier's longest otherwise, on 2 cores shared with the model servers.
    before = {host: lab.live(host)[0] for host in lab.gpu_hosts}
    rc, seconds, report = lab.playbook("6-update", *args)
    SUMMARY["6_update_bundle"] = {"seconds": round(seconds, 1), **sizes}
    (LOGS / "rollouts-summary.json").write_text(json.dumps(SUMMARY, indent=2) + "\n")
    print("\n6_update_bundle: playbook %.0f s" % seconds)
    assert rc == 0, failed_messages(report)
    published = lab.state(lab.build_host, "model_image")
    assert published["digest"] not in (digests["v1"], digests["good"]), published
    for host in lab.gpu_hosts:
        colour, container = lab.live(host)
        assert colour != before[host]
        assert container["Config"]["Labels"]["ai.autoglm.image.digest"] == published["digest"]
        assert lab.state(host)["current"]["weights_revision"] == "r2", lab.state(host)["current"]
        assert list(lab.containers(host)) == ["autoglm-model-server-" + colour]
    assert json.loads((applied / "manifest.json").read_text())["id"] == update["id"]
