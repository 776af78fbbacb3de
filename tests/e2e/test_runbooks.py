"""The runbooks' commands that can run in the lab (docs/runbooks/), on the converged e2e lab, through autoglm-fleet.
They change the lab (a host drained and back, rotated passwords and certificate), so this file runs last (pytest
takes files in name order) and lab/scripts/e2e.sh removes the lab after it."""

import base64
import json
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_cli import artifacts, fleet, host_results  # noqa: E402
from test_lab_serving import GPU_HOSTS, INV, INVENTORY, host_var, live_container, on_host, runtime_root, state  # noqa: E402

REGISTRY = INV["registry"]["hosts"][0]
MONITORING = (INV.get("monitoring") or {}).get("hosts", [])


def started_at(host):
    """When the container the host's front serves from (its live colour) started."""
    return on_host(host, "docker", "inspect", "-f", "{{.State.StartedAt}}", live_container(host)).strip()


def events_of(art, host):
    """(task, event, changed) of a host's results, from the run's job events."""
    return [(d.get("task"), d["event"], bool(d["res"].get("changed"))) for d in host_results(art, host)]


def test_drain_a_host_and_upgrade_its_driver():
    """docs/runbooks/driver-upgrade.md on one host (the lab has no GPU: drained, model server stopped, put back)."""
    host, other = GPU_HOSTS[-1], GPU_HOSTS[0]
    before, other_before = started_at(host), started_at(other)
    serving = state(host, "model_serve")["current"]["digest"]
    result = fleet("play", "driver_upgrade", "-i", INVENTORY, "-l", host, "-e", "driver_upgrade_branch=550")
    assert result.returncode == 0
    assert re.search(r"^%s\s+changed\s" % re.escape(host), result.stdout, re.MULTILINE), result.stdout
    done = {task: (kind, changed) for task, kind, changed in events_of(artifacts(result.stdout), host)}
    take_out = "Take the host out of service (the drain record, read by autoglm-fleet status)"
    assert done[take_out] == ("runner_on_ok", True)
    assert done["Remove the drain record (the host is back in service)"] == ("runner_on_ok", True)
    # Its model server was stopped and started again (the role's smoke test passed), on the digest it served before;
    # it is no longer drained; the other host was left alone.
    assert started_at(host) != before
    assert started_at(other) == other_before
    assert state(host, "model_serve")["current"]["digest"] == serving
    assert on_host(host, "sh", "-c", "test -e %s/state/drain.json || echo gone" % runtime_root(host)).strip() == "gone"


def test_a_bad_branch_is_refused_before_anything_changes():
    host = GPU_HOSTS[0]
    before = started_at(host)
    result = fleet("play", "driver_upgrade", "-i", INVENTORY, "-l", host, "-e", "driver_upgrade_branch=latest")
    assert result.returncode == 1
    assert "driver_upgrade_branch must be an NVIDIA driver branch such as 550" in result.stdout
    assert started_at(host) == before


def registry_get(password, user="fleet"):
    """GET /v2/ on the pull endpoint from the controller, trusting the registry's CA; the HTTP status."""
    ca = on_host(REGISTRY, "cat", "/etc/autoglm-registry/certs/ca.crt")
    context = ssl.create_default_context(cadata=ca)
    request = urllib.request.Request("https://%s:5000/v2/" % host_var(REGISTRY, "lab_address"))
    token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    request.add_header("Authorization", "Basic " + token)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_rotate_registry_credentials_and_certificate():
    """docs/runbooks/registry-rotate.md: new passwords (as the vault would give them) and a new server certificate;
    every GPU host pulls what it serves with them. Then back to the inventory's passwords."""
    cert = "/etc/autoglm-registry/certs/server.crt"
    cert_before = on_host(REGISTRY, "sha256sum", cert)
    assert registry_get("lab-fleet-password") == 200
    new = {
        "registry_users": [{"name": "fleet", "password": "rotated-fleet-pw"},
                           {"name": "build", "password": "rotated-build-pw", "role": "push"}],
        "registry_client_password": "rotated-fleet-pw",
        "registry_client_push_password": "rotated-build-pw",
        "model_serve_password": "rotated-fleet-pw",
    }
    result = fleet("play", "registry_rotate", "-i", INVENTORY, "-e", "registry_rotate_certificate=true",
                   "-e", json.dumps(new))
    assert result.returncode == 0
    assert on_host(REGISTRY, "sha256sum", cert) != cert_before
    assert registry_get("rotated-fleet-pw") == 200
    assert registry_get("lab-fleet-password") == 401
    art = artifacts(result.stdout)
    for host in GPU_HOSTS:
        pulled = [e for e in events_of(art, host) if e[0].startswith("Pull the served digest")]
        assert pulled and pulled[0][1] == "runner_on_ok", (host, pulled)
    # No secret reaches the terminal or the artifacts (the tasks that handle one are no_log).
    assert "rotated-fleet-pw" not in result.stdout
    assert "rotated-fleet-pw" not in (art / "stdout").read_text()
    # Back to the inventory's passwords (as the vault holds them), so the lab's later runs (the rollout stories of
    # tests/e2e/rollouts.sh) log in with what the inventory says.
    back = fleet("play", "registry_rotate", "-i", INVENTORY)
    assert back.returncode == 0, back.stdout[-3000:]
    assert registry_get("lab-fleet-password") == 200
    assert registry_get("rotated-fleet-pw") == 401


def test_5xx_spike_runbook_queries_run_against_the_lab_prometheus():
    """docs/runbooks/5xx-spike.md: its PromQL (the alert's ratio per host, and per status) is valid and answers."""
    base = "http://%s:9090/api/v1/query?query=" % host_var(MONITORING[0], "lab_address")
    queries = [
        'sum by (host) (rate(autoglm_requests_total{job="model_server",status=~"5.."}[5m]))'
        ' / sum by (host) (rate(autoglm_requests_total{job="model_server"}[5m]))',
        'sum by (host, status) (rate(autoglm_requests_total{job="model_server"}[5m]))',
        'ALERTS{alertname="AutoglmModelServer5xxRatioHigh"}',
    ]
    for query in queries:
        with urllib.request.urlopen(base + urllib.parse.quote(query), timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", (query, body)
    hosts = {s["metric"]["host"] for s in _query(base, queries[1])}
    assert set(GPU_HOSTS) <= hosts, hosts


def _query(base, query):
    with urllib.request.urlopen(base + urllib.parse.quote(query), timeout=10) as response:
        return json.load(response)["data"]["result"]


def test_audit_verify_the_runs_of_this_lab():
    """Every run above went into the audit trail; `autoglm-fleet audit verify` checks its chain."""
    result = fleet("audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
