"""Run the serve_analysis module the way Ansible does (a JSON args file; and once through ansible-playbook)
against a loopback server whose /metrics answers a sequence of recorded expositions."""

import json
import os
import sys
import textwrap

import pytest
from support.module_run import run_module as support_run_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
FIXTURES = os.path.join(REPO, "tests", "unit", "fixtures_serve_analysis")
sys.path.insert(0, FIXTURES)
from metrics_server import MetricsServer  # noqa: E402

FAST = {"interval": 0.2, "retries": 1, "retry_delay": 0.05, "timeout": 5}


def text(name):
    with open(os.path.join(FIXTURES, name + ".prom")) as f:
        return f.read()


def run_module(tmp_path, args, check=False):
    return support_run_module("serve_analysis", tmp_path, args, check=check)[1]


def test_healthy_colour_promotes_in_check_mode_and_for_real(tmp_path):
    sequence = [text("autoglm-00-baseline"), text("autoglm-01-healthy")]
    for check in (True, False):
        with MetricsServer(sequence, token="s3cret-token") as srv:
            args = dict(FAST, url=srv.url, health_url=srv.base + "/health/ready", token="s3cret-token", iterations=2)
            res = run_module(tmp_path, args, check=check)
            # a probe: check mode scrapes too, and nothing is ever changed
            assert res.get("failed") is not True, res.get("msg")
            assert (res["changed"], res["verdict"], res["passed"], res["gate"]) == (False, "promote", True, None)
            assert srv.paths() == ["/metrics", "/health/ready"] * 3
            assert [w["requests"] for w in res["windows"]] == [202, 0]  # the last exposition repeats
            assert [w["status"] for w in res["windows"]] == ["pass", "no_data"]
            assert res["totals"]["scrapes"] == 3 and res["totals"]["seconds"] == pytest.approx(0.4, abs=0.15)
            assert res["thresholds"] == {"max_error_ratio": 0.05, "max_latency_seconds": 1.0,
                                         "latency_quantile": 0.95, "min_requests": 20, "fail_on_no_traffic": True}
            assert res["msg"].startswith("promote: 202 generation requests in 2 windows")
            assert "s3cret-token" not in json.dumps(res)


def test_5xx_spike_is_a_rollback_verdict_not_a_failure(tmp_path):
    sequence = [text("autoglm-00-baseline"), text("autoglm-01-healthy"), text("autoglm-02-5xx-spike")]
    with MetricsServer(sequence) as srv:
        res = run_module(tmp_path, dict(FAST, url=srv.url, iterations=2))
    assert "failed" not in res or res["failed"] is False
    assert (res["verdict"], res["passed"], res["gate"]) == ("rollback", False, "error_ratio")
    assert res["msg"].startswith("rollback: 5xx ratio 20 % above 5 % in window 2 (40 of 200 requests)")
    assert res["failed_gates"][0] == {"gate": "error_ratio", "window": 2, "value": 0.2, "threshold": 0.05,
                                      "requests": 200, "errors_5xx": 40, "verdict": "rollback"}


def test_restart_and_slow_colour_halts(tmp_path):
    sequence = [text("autoglm-00-baseline"), text("autoglm-04-restarted"), text("autoglm-03-slow")]
    with MetricsServer(sequence) as srv:
        res = run_module(tmp_path, dict(FAST, url=srv.url, iterations=2, metrics_flavour="autoglm"))
    w1, w2 = res["windows"]
    assert w1["counter_reset"] is True and w1["requests"] == 51
    # 04-restarted -> 03-slow is another reset (03 belongs to the first process): counted from its values
    assert w2["counter_reset"] is True
    assert (res["verdict"], res["gate"]) == ("halt", "latency")


def test_vllm_flavour_against_its_health(tmp_path):
    sequence = [text("vllm-00-baseline"), text("vllm-01-healthy")]
    with MetricsServer(sequence, health=[200, 503]) as srv:
        res = run_module(tmp_path, dict(FAST, url=srv.url, iterations=1, metrics_flavour="vllm",
                                        health_url=srv.base + "/health"))
    assert res["windows"][0]["requests"] == 202
    assert (res["verdict"], res["gate"]) == ("rollback", "ready")
    assert "health_url %s/health answered HTTP 503" % srv.base in res["msg"]


def test_unreachable_colour_is_not_ready(tmp_path):
    with MetricsServer([""]) as srv:
        url = srv.url
    res = run_module(tmp_path, dict(FAST, url=url, iterations=1))
    assert (res["verdict"], res["gate"], res["passed"]) == ("rollback", "ready", False)
    assert res["totals"]["scrapes_failed"] == 2
    assert "failed after 2 attempt(s)" in res["msg"] and "ConnectionRefusedError" in res["msg"]


def test_bad_input_fails_before_any_request(tmp_path):
    with MetricsServer([text("autoglm-00-baseline")]) as srv:
        res = run_module(tmp_path, {"url": srv.url, "max_error_ratio": 5, "iterations": 0, "max_latency_seconds": -1})
        assert srv.requests == []
    assert res["failed"] is True
    assert "max_error_ratio must be <= 1 (a ratio in [0, 1]: 0.05 means 5 %), got 5.0" in res["msg"]
    assert "iterations must be an integer >= 1" in res["msg"] and "max_latency_seconds must be > 0" in res["msg"]
    assert "Traceback" not in res["msg"]


def test_unknown_flavour_is_refused(tmp_path):
    res = run_module(tmp_path, {"url": "http://127.0.0.1:1/metrics", "metrics_flavour": "tgi"})
    assert res["failed"] is True and "metrics_flavour" in res["msg"] and "autoglm, vllm" in res["msg"]


@pytest.mark.integration
def test_in_a_playbook_check_mode(tmp_path, ansible_playbook):
    """FQCN resolution, check mode and a verdict a later task can act on, through ansible-playbook."""
    sequence = [text("autoglm-00-baseline"), text("autoglm-01-healthy"), text("autoglm-02-5xx-spike")]
    with MetricsServer(sequence) as srv:
        playbook = tmp_path / "analysis.yml"
        playbook.write_text(textwrap.dedent("""\
            - name: Analyse a colour
              hosts: localhost
              gather_facts: false
              tasks:
                - name: Analyse
                  autoglm.fleet.serve_analysis:
                    url: %s
                    interval: 0.2
                    iterations: 2
                  register: analysis
                - name: The verdict is usable
                  ansible.builtin.assert:
                    that:
                      - analysis is not changed
                      - analysis is not failed
                      - analysis.verdict == 'rollback'
                      - analysis.gate == 'error_ratio'
                      - not analysis.passed
                      - analysis.windows | length == 2
                - name: Say it
                  ansible.builtin.debug:
                    msg: "{{ analysis.msg }}"
            """ % srv.url))
        proc = ansible_playbook(playbook, "-i", "localhost,", "-c", "local", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rollback: 5xx ratio 20 % above 5 % in window 2 (40 of 200 requests)" in proc.stdout
    assert "ok=3" in proc.stdout and "changed=0" in proc.stdout and "failed=0" in proc.stdout
