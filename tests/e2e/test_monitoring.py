"""The lab's monitoring, after lab/playbooks/lab.yml: Prometheus on the monitoring host scrapes every target, and
stopping one model server fires its alert (then the server is started again and serves)."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# pytest imports test files with --import-mode=importlib (pyproject.toml), which puts no test directory on sys.path.
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_lab_serving import GPU_HOSTS, INV, host_var, on_host  # noqa: E402

MONITORING = (INV.get("monitoring") or {}).get("hosts", [])


def test_the_lab_has_a_monitoring_host():
    assert len(MONITORING) == 1, MONITORING


def prometheus(path):
    base = "http://%s:9090" % host_var(MONITORING[0], "lab_address")
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.load(response)["data"]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(2)


def test_prometheus_sees_every_target_up():
    def all_up():
        targets = prometheus("/api/v1/targets?state=active")["activeTargets"]
        jobs = {t["labels"]["job"] for t in targets}
        down = [t for t in targets if t["health"] != "up"]
        return targets if not down and {"node", "model_server", "prometheus"} <= jobs else None

    targets = wait_for(all_up, 120, "every Prometheus target to be up")
    scraped = {t["labels"].get("host") for t in targets if t["labels"]["job"] == "model_server"}
    assert scraped == set(GPU_HOSTS)
    nodes = {t["labels"].get("host") for t in targets if t["labels"]["job"] == "node"}
    assert set(GPU_HOSTS) <= nodes and MONITORING[0] in nodes


def test_stopping_one_model_server_fires_its_alert():
    host = GPU_HOSTS[0]
    names = on_host(host, "docker", "ps", "--filter", "name=autoglm-model-server", "--format", "{{.Names}}").split()
    assert names, "no model server container runs on " + host
    on_host(host, "docker", "stop", "--time", "5", *names)
    try:
        def firing():
            alerts = prometheus("/api/v1/alerts")["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "AutoglmModelServerDown"
                    and a["labels"].get("host") == host and a["state"] == "firing"]

        assert wait_for(firing, 120, "AutoglmModelServerDown to fire for " + host)
        others = [a for a in prometheus("/api/v1/alerts")["alerts"]
                  if a["labels"]["alertname"] == "AutoglmModelServerDown" and a["labels"].get("host") != host]
        assert not others, others
    finally:
        on_host(host, "docker", "start", *names)
        wait_for(lambda: all(
            subprocess.run(["docker", "exec", host, "docker", "inspect", "-f", "{{.State.Health.Status}}", n],
                           capture_output=True, text=True, check=False).stdout.strip() == "healthy" for n in names),
                 300, "the model server to be healthy again")
