"""The monitoring role's generated files and its bad-input gates, without a monitoring host.

- the Grafana dashboard: structure, and every metric its PromQL names is one the model server exports (read from
  containers/model-server/src/autoglm_server/metrics.py) or one of the node exporter's (molecule/monitoring checks
  those against a running node exporter);
- prometheus.yml, the rules and the blackbox modules rendered by a real ansible-playbook from the role's templates and
  variables for a small inventory: jobs, targets, key files (the key never in the configuration), the registry probe;
- every alert of the rules has a firing case in the promtool tests (molecule/monitoring runs them with promtool);
- bad input fails in preflight, before anything changes, with every failure in one message.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "monitoring"
DASHBOARD = ROLE / "files" / "grafana" / "autoglm-model-server.json"
METRICS_PY = ROOT / "containers" / "model-server" / "src" / "autoglm_server" / "metrics.py"
PROMTOOL_TESTS = ROOT / "molecule" / "monitoring" / "files" / "autoglm.rules.test.yml"

# Node exporter metrics the dashboard and rules use; molecule/monitoring/verify.yml checks each against the node
# exporter it installs (Debian's prometheus-node-exporter).
NODE_METRICS = {
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
}
# Written by the role's node_exporter entry point (textfile collector), the blackbox exporter's, dcgm-exporter's.
TEXTFILE_METRICS = {"autoglm_model_path_info", "autoglm_host_gpu_memory_total_bytes"}
OTHER_METRICS = {"up", "probe_success", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"}

PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
}
SECRET_KEY = "monitoring-test-Key-5d2c9b"


def server_metrics():
    """The series names the model server exports, from its metrics.py (prometheus_client's suffixes added)."""
    text = METRICS_PY.read_text()
    names = set()
    for kind, name in re.findall(r'\b(Counter|Gauge|Histogram)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', text):
        if kind == "Counter":
            names |= {name + "_total", name + "_created"}
        elif kind == "Histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count", name + "_created"}
        else:
            names.add(name)
    assert len(names) > 10, "could not read the server's metrics from %s" % METRICS_PY
    return names


def metric_names(expr):
    """The metric names a PromQL expression reads (not functions, keywords, labels or numbers)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)  # label lists
    tokens = re.findall(r"(?<![\w:$])[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr)
    return {t for t in tokens if t.lower() not in PROMQL_WORDS and not re.match(r"^\d", t)}


# ------------------------------------------------------------------------------------------------ dashboard
def test_dashboard_structure():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert metric_names(variables["host"]["definition"]) - {"label_values", "host"} <= server_metrics()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["title"] and p["type"] in ("timeseries", "stat"), p
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_every_dashboard_query_names_metrics_the_fleet_exports():
    known = server_metrics() | NODE_METRICS
    dash = json.loads(DASHBOARD.read_text())
    used = set()
    for p in dash["panels"]:
        for t in p["targets"]:
            names = metric_names(t["expr"])
            assert names, (p["title"], t["expr"])
            assert names <= known, "%s: %s names %s, not exported" % (p["title"], t["expr"], sorted(names - known))
            assert 'job="' in t["expr"], (p["title"], t["expr"])
            used |= names
    # the service at a glance: requests, 5xx, TTFT, tokens/s, queue, GPU memory
    for needed in (
        "autoglm_requests_total",
        "autoglm_time_to_first_token_seconds_bucket",
        "autoglm_generation_tokens_total",
        "autoglm_requests_waiting",
        "autoglm_gpu_memory_reserved_bytes",
    ):
        assert needed in used, needed
    assert any('status=~"5.."' in t["expr"] for p in dash["panels"] for t in p["targets"])


def test_metric_name_extraction():
    assert metric_names('sum by (host, le) (rate(a_total{job="x",le=~"1|2"}[5m])) / on (host) b offset 5m > 0.5') == {
        "a_total",
        "b",
    }
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(x_bucket[1m])))") == {"x_bucket"}


# ------------------------------------------------------------------------------------------------ rendering
INVENTORY = {
    "all": {
        "hosts": {"mon": {"ansible_connection": "local"}},
        "children": {
            "gpu_hosts": {
                "hosts": {
                    "gpu-1": {
                        "model_serve_api_key": SECRET_KEY,
                        "model_serve_port": 8001,
                        "monitoring_scrape_address": "10.0.0.11",
                    },
                    "gpu-2": {"ansible_host": "10.0.0.12"},
                }
            },
            "registry": {
                "hosts": {
                    "reg-1": {
                        "registry_endpoint": "reg-1.example:5000",
                        "registry_ca_cert": "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----",
                    }
                }
            },
        },
    }
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """prometheus.yml, the rules and blackbox.yml as the role renders them for INVENTORY (ansible-playbook)."""
    import os
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("monitoring")
    (tmp / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    # after the role's defaults (vars_files outrank play vars)
    (tmp / "overrides.yml").write_text(
        yaml.safe_dump(
            {
                "monitoring_alertmanagers": ["am-1:9093"],
                "monitoring_extra_scrape_configs": [{"job_name": "extra", "static_configs": [{"targets": ["x:1"]}]}],
            }
        )
    )
    play = [
        {
            "name": "Render the monitoring role's files",
            "hosts": "mon",
            "gather_facts": False,
            "vars_files": [
                str(ROLE / "defaults" / "main.yml"),
                str(ROLE / "vars" / "main.yml"),
                str(tmp / "overrides.yml"),
            ],
            "tasks": [
                {
                    "name": "Render %s" % src,
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / src),
                        "dest": str(tmp / dest),
                        "mode": "0600",
                    },
                }
                for src, dest in [
                    ("prometheus.yml.j2", "prometheus.yml"),
                    ("autoglm.rules.yml.j2", "rules.yml"),
                    ("blackbox.yml.j2", "blackbox.yml"),
                ]
            ],
        }
    ]
    (tmp / "play.yml").write_text(yaml.safe_dump(play))
    (tmp / "ansible.cfg").write_text("[defaults]\ncollections_path = %s\n" % (ROOT / ".cache" / "collections"))
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp / "ansible.cfg"), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run(
        [exe, "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return {name: (tmp / name).read_text() for name in ("prometheus.yml", "rules.yml", "blackbox.yml")}


def jobs(config):
    return {j["job_name"]: j for j in config["scrape_configs"]}


def test_prometheus_config_targets_every_host_with_its_label(rendered):
    text = rendered["prometheus.yml"]
    assert SECRET_KEY not in text
    config = yaml.safe_load(text)
    assert config["rule_files"] == ["/etc/autoglm-monitoring/rules/*.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["am-1:9093"]
    j = jobs(config)
    assert set(j) == {"prometheus", "node", "model_server", "model_server_gpu-1", "registry_probe", "extra"}
    node = {c["labels"]["host"]: c["targets"] for c in j["node"]["static_configs"]}
    assert node == {
        "mon": ["mon:9100"],
        "gpu-1": ["10.0.0.11:9100"],
        "gpu-2": ["10.0.0.12:9100"],
        "reg-1": ["reg-1:9100"],
    }
    # the keyless server in the shared job; the keyed one in a job of its own, with its key as a file, relabelled
    assert j["model_server"]["static_configs"] == [{"targets": ["10.0.0.12:8000"], "labels": {"host": "gpu-2"}}]
    keyed = j["model_server_gpu-1"]
    assert keyed["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/autoglm-monitoring/secrets/model_server_gpu-1.key",
    }
    assert keyed["static_configs"] == [{"targets": ["10.0.0.11:8001"], "labels": {"host": "gpu-1"}}]
    assert keyed["relabel_configs"] == [{"target_label": "job", "replacement": "model_server"}]
    probe = j["registry_probe"]
    assert probe["params"] == {"module": ["autoglm_registry"]} and probe["metrics_path"] == "/probe"
    assert probe["static_configs"] == [{"targets": ["https://reg-1.example:5000/v2/"], "labels": {"host": "reg-1"}}]
    assert probe["relabel_configs"][-1] == {"target_label": "__address__", "replacement": "127.0.0.1:9115"}
    assert j["extra"]["static_configs"] == [{"targets": ["x:1"]}]


def test_blackbox_module_checks_tls_with_the_registry_ca(rendered):
    module = yaml.safe_load(rendered["blackbox.yml"])["modules"]["autoglm_registry"]
    assert module["prober"] == "http"
    assert module["http"]["valid_status_codes"] == [200, 401] and module["http"]["fail_if_not_ssl"] is True
    assert module["http"]["tls_config"] == {"ca_file": "/etc/autoglm-monitoring/registry-ca.crt"}
    assert "insecure_skip_verify" not in rendered["blackbox.yml"]


def test_rules_carry_the_default_thresholds_and_known_metrics(rendered):
    rules = yaml.safe_load(rendered["rules.yml"])["groups"][0]["rules"]
    by = {r["alert"]: r for r in rules}
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert list(by) == role_vars["_monitoring_alerts"]
    assert (
        by["AutoglmModelServer5xxRatioHigh"]["expr"].endswith("> 0.05")
        and by["AutoglmModelServer5xxRatioHigh"]["for"] == "5m"
    )
    assert by["AutoglmModelServerLatencyP95High"]["expr"].endswith("> 1.0")
    assert by["AutoglmGpuMemoryHigh"]["expr"].endswith("> 0.9")
    assert by["AutoglmModelDiskFull"]["expr"].endswith("> 0.85")
    assert by["AutoglmModelLoadFailed"]["for"] == "15m"
    known = server_metrics() | NODE_METRICS | TEXTFILE_METRICS | OTHER_METRICS
    for name, rule in by.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert "$labels.host" in rule["annotations"]["summary"], name
        names = metric_names(rule["expr"])
        assert names and names <= known, "%s names %s" % (name, sorted(names - known))


def test_every_alert_has_a_firing_promtool_case():
    tests = yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
    firing = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c.get("exp_alerts")}
    quiet = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if not c.get("exp_alerts")}
    alerts = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_monitoring_alerts"]
    assert set(alerts) <= firing, sorted(set(alerts) - firing)
    assert len(quiet) >= 6


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input_fails_in_preflight_with_every_failure(tmp_path, ansible_playbook):
    play = textwrap.dedent(
        """\
        - name: Bad input to the monitoring role
          hosts: all
          gather_facts: false
          tasks:
            - name: Main entry point
              block:
                - name: Run the role
                  ansible.builtin.include_role:
                    name: autoglm.fleet.monitoring
                  vars:
                    monitoring_alert_5xx_ratio: 5
                    monitoring_alert_disk_ratio: 0
                    monitoring_alert_5xx_for: 5 minutes
                    monitoring_retention_time: forever
                    monitoring_port: 70000
                    monitoring_scrape_interval: 5s
                    monitoring_scrape_timeout: 1m
                    monitoring_alertmanagers: ["http://am:9093/"]
                    monitoring_registry_ca: not a certificate
                    monitoring_extra_scrape_configs: [{job_name: node}]
                - name: Not reached
                  ansible.builtin.set_fact:
                    main_msg: PASSED
              rescue:
                - name: Keep the message
                  ansible.builtin.set_fact:
                    main_msg: "{{ ansible_failed_result.msg }}"
            - name: Entry point node_exporter
              block:
                - name: Run it
                  ansible.builtin.include_role:
                    name: autoglm.fleet.monitoring
                    tasks_from: node_exporter
                  vars:
                    monitoring_node_exporter_port: 0
                    monitoring_node_exporter_textfile_dir: var/lib/textfile
                    monitoring_model_path: models
                - name: Not reached
                  ansible.builtin.set_fact:
                    node_msg: PASSED
              rescue:
                - name: Keep the message
                  ansible.builtin.set_fact:
                    node_msg: "{{ ansible_failed_result.msg }}"
            - name: Write the messages
              ansible.builtin.copy:
                dest: "{{ out }}"
                content: "{{ {'main': main_msg, 'node': node_msg} | to_json }}"
                mode: "0600"
              check_mode: false
        """
    )
    (tmp_path / "play.yml").write_text(play)
    out = tmp_path / "messages.json"
    proc = ansible_playbook(
        tmp_path / "play.yml", "--check", "-i", "mon,", "-e", "ansible_connection=local", "-e", "out=%s" % out
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    msgs = json.loads(out.read_text())
    main = msgs["main"]
    assert main.startswith("monitoring preflight failed on mon:"), main
    for needle in (
        "monitoring_port and monitoring_blackbox_port must be 1..65535",
        "monitoring_alert_5xx_for=5 minutes",
        "monitoring_retention_time=forever",
        "monitoring_alert_5xx_ratio, monitoring_alert_gpu_memory_ratio and monitoring_alert_disk_ratio",
        "every monitoring_alertmanagers item is host:port",
        "monitoring_registry_ca must be PEM text",
        "none of the role's own",
        "monitoring_scrape_timeout (1m) is longer than monitoring_scrape_interval (5s)",
    ):
        assert needle in main, (needle, main)
    node = msgs["node"]
    assert node.startswith("monitoring (node_exporter) preflight failed on mon:"), node
    for needle in (
        "monitoring_node_exporter_port must be 1..65535",
        "monitoring_node_exporter_textfile_dir must be an absolute",
        "monitoring_model_path must be an absolute path",
    ):
        assert needle in node, (needle, node)
