"""The serve_analysis engine on recorded /metrics expositions (tests/unit/fixtures_serve_analysis/*.prom,
recorded from the model server's own Metrics class and from vLLM's metric names by record.py there), plus
its prober against a real loopback server (retries, token, redirects, https with a CA file)."""

import math
import os
import subprocess
import sys

import pytest
import yaml
from ansible_collections.autoglm.fleet.plugins.module_utils import _serve_analysis as sa

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
FIXTURES = os.path.join(ROOT, "tests", "unit", "fixtures_serve_analysis")
sys.path.insert(0, FIXTURES)
from metrics_server import MetricsServer  # noqa: E402

INTERVAL = 30.0


class ServerMetrics:
    """The model server's own Metrics class (containers/model-server), fed as its request path feeds it."""

    def __init__(self):
        sys.path.insert(0, os.path.join(ROOT, "containers", "model-server", "src"))
        from autoglm_server.metrics import Metrics
        from prometheus_client import generate_latest

        self.metrics, self._render = Metrics(), generate_latest
        self.metrics.ready.set(1)

    def generate(self, endpoint, status, latencies):
        for seconds in latencies:
            self.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(seconds)

    def text(self):
        return self._render(self.metrics.registry).decode()


@pytest.fixture
def server_metrics():
    return ServerMetrics()


def text(name):
    with open(os.path.join(FIXTURES, name + ".prom")) as f:
        return f.read()


def config(**kw):
    kw.setdefault("url", "http://127.0.0.1:8001/metrics")
    return sa.Config.from_params(kw)


def snapshots(items, cfg):
    """Snapshots 30 s apart; an item is a recorded file's name or a ready-made Snapshot."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, sa.Snapshot):
            item.index, item.at = i, i * INTERVAL
            out.append(item)
        else:
            out.append(sa.snapshot_from_text(i, i * INTERVAL, text(item), cfg))
    return out


def analyse(items, **kw):
    cfg = config(**kw)
    return sa.analyse(snapshots(items, cfg), cfg)


# ----------------------------------------------------------------------------------- recorded windows


def test_healthy_window_promotes():
    r = analyse(["autoglm-00-baseline", "autoglm-01-healthy"])
    assert (r["verdict"], r["passed"], r["gate"], r["failed_gates"]) == ("promote", True, None, [])
    (w,) = r["windows"]
    # 185 chat + 15 completions answered 200, 2 chat 500; the 400s and health/metrics probes do not count
    assert (w["requests"], w["errors_5xx"], w["error_ratio"]) == (202, 2, round(2 / 202, 6))
    assert w["latency_observations"] == 202
    assert 0.25 < w["latency_seconds"] <= 0.5
    assert (w["status"], w["ready"], w["counter_reset"], w["seconds"]) == ("pass", True, False, 30.0)
    assert r["totals"]["requests"] == 202 and r["totals"]["judged"] is True
    assert r["msg"].startswith("promote: 202 generation requests in 1 window over 30 s, 5xx 0.99 %, P95 0.")
    assert "ready in 2 of 2 scrapes" in r["msg"]


def test_5xx_spike_rolls_back_with_its_numbers():
    r = analyse(["autoglm-00-baseline", "autoglm-01-healthy", "autoglm-02-5xx-spike"])
    assert (r["verdict"], r["passed"], r["gate"]) == ("rollback", False, "error_ratio")
    w1, w2 = r["windows"]
    assert w1["status"] == "pass"
    # 25 engine failures (observed by the latency histogram) + 15 not-ready 503s (not observed)
    assert (w2["status"], w2["failed_gates"], w2["requests"], w2["errors_5xx"]) == ("fail", ["error_ratio"], 200, 40)
    assert w2["latency_observations"] == 185
    gates = {(f["gate"], f["window"]): f for f in r["failed_gates"]}
    assert set(gates) == {("error_ratio", 2), ("error_ratio", "overall")}
    assert gates["error_ratio", 2]["value"] == 0.2 and gates["error_ratio", 2]["threshold"] == 0.05
    assert gates["error_ratio", "overall"]["requests"] == 402 and gates["error_ratio", "overall"]["errors_5xx"] == 42
    assert r["msg"].startswith("rollback: 5xx ratio 20 % above 5 % in window 2 (40 of 200 requests)")
    assert "\n" not in r["msg"]


def test_5xx_threshold_is_tunable():
    r = analyse(["autoglm-00-baseline", "autoglm-01-healthy", "autoglm-02-5xx-spike"], max_error_ratio=0.25)
    assert r["verdict"] == "promote"
    r = analyse(["autoglm-00-baseline", "autoglm-01-healthy"], max_error_ratio=0.005)
    assert r["verdict"] == "rollback" and r["windows"][0]["failed_gates"] == ["error_ratio"]


def test_slow_p95_halts():
    r = analyse(["autoglm-00-baseline", "autoglm-01-healthy", "autoglm-03-slow"])
    assert (r["verdict"], r["passed"], r["gate"]) == ("halt", False, "latency")
    w2 = r["windows"][1]
    assert (w2["requests"], w2["errors_5xx"], w2["failed_gates"]) == (200, 0, ["latency"])
    # 170 observations below 1 s, 30 in (1, 2.5]: rank 190 lies 20/30 into that bucket: 1 + 1.5 * 20 / 30
    assert w2["latency_seconds"] == pytest.approx(2.0)
    assert r["msg"].startswith("halt: P95 latency 2 s above 1 s in window 2 (200 requests)")


@pytest.mark.parametrize(("opts", "verdict"), [
    ({"max_latency_seconds": 2.5}, "promote"),
    ({"latency_quantile": 0.8}, "promote"),   # P80: rank 160 of the 170 fast ones
    ({"latency_quantile": 0.86}, "halt"),     # rank 172 is past the fast ones
    ({"min_requests": 201}, "inconclusive"),  # latency judged on 200 observations only
])
def test_latency_gate_is_tunable(opts, verdict):
    r = analyse(["autoglm-01-healthy", "autoglm-03-slow"], **opts)
    assert r["verdict"] == verdict, r["msg"]


def test_counter_reset_counts_from_the_new_values():
    r = analyse(["autoglm-00-baseline", "autoglm-01-healthy", "autoglm-04-restarted"])
    assert r["verdict"] == "promote", r["msg"]
    w2 = r["windows"][1]
    # the restarted process answered 50 + 1 generation requests since it started; a plain difference would be
    # negative (245 chat 200 before, 40 after)
    assert (w2["counter_reset"], w2["requests"], w2["errors_5xx"], w2["latency_observations"]) == (True, 51, 1, 51)
    assert r["totals"]["counter_resets"] == 1 and r["totals"]["requests"] == 202 + 51


def test_restart_that_only_created_reveals():
    """Every series grew across the restart; the _created timestamps changed, so the window counts from zero."""
    r = analyse(["autoglm-10-restart-a", "autoglm-11-restart-b"])
    (w,) = r["windows"]
    assert (w["counter_reset"], w["requests"], w["latency_observations"]) == (True, 50, 50)


def test_no_traffic_is_inconclusive_and_fail_on_no_traffic_decides():
    r = analyse(["autoglm-01-healthy", "autoglm-05-idle"])
    assert (r["verdict"], r["gate"], r["passed"]) == ("inconclusive", "traffic", False)
    (w,) = r["windows"]
    assert (w["status"], w["requests"], w["error_ratio"], w["latency_seconds"]) == ("no_data", 0, None, None)
    assert r["msg"].startswith("inconclusive: no traffic: 0 generation requests in 1 window")
    assert "not passed (fail_on_no_traffic=true)" in r["msg"]
    r = analyse(["autoglm-01-healthy", "autoglm-05-idle"], fail_on_no_traffic=False)
    assert (r["verdict"], r["passed"]) == ("inconclusive", True)
    assert "passed anyway (fail_on_no_traffic=false)" in r["msg"]


def test_too_few_requests_is_no_data_not_a_failure():
    # 6 requests, 1 of them 500 (17 %): below min_requests=20 the window is not judged
    r = analyse(["autoglm-01-healthy", "autoglm-06-few"])
    assert (r["verdict"], r["gate"], r["windows"][0]["status"]) == ("inconclusive", "traffic", "no_data")
    assert r["msg"].startswith("inconclusive: too few requests: 6 generation requests")
    r = analyse(["autoglm-01-healthy", "autoglm-06-few"], min_requests=5)
    assert r["verdict"] == "rollback" and r["windows"][0]["error_ratio"] == round(1 / 6, 6)


def test_no_data_windows_do_not_count_but_the_whole_analysis_is_judged():
    # window 1: 202 requests, window 2: 6; with min_requests=203 neither window is judged, the sum (208) is
    r = analyse(["autoglm-00-baseline", "autoglm-01-healthy", "autoglm-06-few"], min_requests=203)
    assert [w["status"] for w in r["windows"]] == ["no_data", "no_data"]
    assert r["totals"]["judged"] is True and r["totals"]["requests"] == 208
    assert r["verdict"] == "promote", r["msg"]
    assert "0 of 2 windows with enough traffic" in r["msg"]


def test_low_traffic_errors_are_still_caught_over_the_whole_analysis(server_metrics):
    """A colour answering 500 to half of its few requests must not pass as "no data"."""
    texts = [server_metrics.text()]
    for _i in range(3):
        server_metrics.generate("/v1/chat/completions", 200, [0.2] * 4)
        server_metrics.generate("/v1/chat/completions", 500, [0.01] * 4)
        texts.append(server_metrics.text())
    cfg = config()
    snaps = [sa.snapshot_from_text(i, i * INTERVAL, t, cfg) for i, t in enumerate(texts)]
    r = sa.analyse(snaps, cfg)
    assert [w["status"] for w in r["windows"]] == ["no_data"] * 3
    assert (r["verdict"], r["gate"]) == ("rollback", "error_ratio")
    (f,) = r["failed_gates"]
    assert (f["window"], f["requests"], f["errors_5xx"], f["value"]) == ("overall", 24, 12, 0.5)
    assert "in the whole analysis (12 of 24 requests)" in r["msg"]


def test_draining_server_is_not_ready():
    r = analyse(["autoglm-01-healthy", "autoglm-07-draining"])
    assert (r["verdict"], r["gate"]) == ("rollback", "ready")
    (w,) = r["windows"]
    assert w["ready"] is False and "ready gauge is 0" in w["not_ready_reason"]
    assert w["requests"] == 30  # the numbers are still reported
    assert r["msg"].startswith("rollback: not ready in 1 of 2 scrapes (scrape 1: ready gauge is 0")


def test_not_ready_baseline_fails_window_one():
    cfg = config()
    base = sa.snapshot_from_text(0, 0.0, text("autoglm-07-draining"), cfg)
    r = sa.analyse([base, sa.snapshot_from_text(1, INTERVAL, text("autoglm-07-draining"), cfg)], cfg)
    assert r["windows"][0]["not_ready_reason"].startswith("scrape 0: ready gauge is 0")


def test_unreachable_scrape_is_not_ready_and_the_next_window_spans_the_gap():
    cfg = config()
    down = sa.Snapshot(0, 0.0, False, error="http://127.0.0.1:8001/metrics: ConnectionRefusedError", attempts=3)
    r = sa.analyse(snapshots(["autoglm-00-baseline", down, "autoglm-01-healthy"], cfg), cfg)
    w1, w2 = r["windows"]
    assert (w1["status"], w1["ready"], w1["requests"]) == ("fail", False, 0)
    assert "scrape 1 failed after 3 attempt(s): http://127.0.0.1:8001/metrics: ConnectionRefusedError" in \
        w1["not_ready_reason"]
    # window 2 is measured from the last good scrape (0) to scrape 2: 60 s and all 202 requests
    assert (w2["status"], w2["seconds"], w2["requests"]) == ("pass", 60.0, 202)
    assert (r["verdict"], r["gate"], r["totals"]["scrapes_failed"]) == ("rollback", "ready", 1)


def test_health_url_answer_makes_a_scrape_not_ready():
    cfg = config(health_url="http://127.0.0.1:8001/health/ready")
    snap = sa.snapshot_from_text(1, INTERVAL, text("autoglm-01-healthy"), cfg, health_ok=False,
                                 health_detail="http://127.0.0.1:8001/health/ready answered HTTP 503")
    r = sa.analyse([sa.snapshot_from_text(0, 0.0, text("autoglm-00-baseline"), cfg, health_ok=True), snap], cfg)
    assert r["verdict"] == "rollback"
    assert r["windows"][0]["not_ready_reason"] == "scrape 1: health_url http://127.0.0.1:8001/health/ready " \
                                                  "answered HTTP 503"


def test_missing_metric_families_never_pass():
    r = analyse(["vllm-00-baseline", "vllm-01-healthy"], fail_on_no_traffic=False)
    assert (r["verdict"], r["gate"], r["passed"]) == ("inconclusive", "metrics", False)
    assert r["missing_metrics"] == ["autoglm_requests", "autoglm_request_latency_seconds", "autoglm_ready"]
    assert "is metrics_flavour=autoglm right for this server?" in r["msg"]


def test_one_missing_family_is_reported_while_the_others_are_read():
    lines = [ln for ln in text("autoglm-01-healthy").splitlines() if "autoglm_request_latency_seconds" not in ln]
    cfg = config()
    snaps = [sa.snapshot_from_text(0, 0.0, text("autoglm-00-baseline"), cfg),
             sa.snapshot_from_text(1, INTERVAL, "\n".join(lines), cfg)]
    r = sa.analyse(snaps, cfg)
    assert r["missing_metrics"] == ["autoglm_request_latency_seconds"]
    assert (r["verdict"], r["windows"][0]["requests"]) == ("inconclusive", 202)


def test_vllm_flavour():
    r = analyse(["vllm-00-baseline", "vllm-01-healthy", "vllm-02-5xx-spike"], metrics_flavour="vllm")
    w1, w2 = r["windows"]
    # /v1/models requests (handler label) do not count; 5xx is the instrumentator's grouped "5xx" status
    assert (w1["requests"], w1["errors_5xx"], w1["status"]) == (202, 2, "pass")
    assert w1["latency_observations"] == 200  # vLLM's e2e histogram sees the requests it finished
    assert 0.5 < w1["latency_seconds"] <= 0.8
    assert (w2["requests"], w2["errors_5xx"], w2["failed_gates"]) == (200, 50, ["error_ratio"])
    assert (r["verdict"], r["missing_metrics"], r["metrics_flavour"]) == ("rollback", [], "vllm")
    # vLLM has no ready gauge: scrapes that answer are ready
    assert r["totals"]["scrapes_not_ready"] == 0


def test_vllm_ungrouped_status_codes_count_as_5xx():
    body = text("vllm-01-healthy").replace('status="5xx"', 'status="503"')
    cfg = config(metrics_flavour="vllm")
    r = sa.analyse([sa.snapshot_from_text(0, 0.0, text("vllm-00-baseline"), cfg),
                    sa.snapshot_from_text(1, INTERVAL, body, cfg)], cfg)
    assert r["windows"][0]["errors_5xx"] == 2


def test_real_server_metric_names(server_metrics):
    """The names, labels and buckets the analysis reads are the ones the model server's Metrics class writes."""
    before = server_metrics.text()
    server_metrics.generate("/v1/completions", 200, [0.3] * 19)
    server_metrics.generate("/v1/chat/completions", 500, [0.05])
    cfg = config()
    r = sa.analyse([sa.snapshot_from_text(0, 0.0, before, cfg),
                    sa.snapshot_from_text(1, INTERVAL, server_metrics.text(), cfg)], cfg)
    assert r["missing_metrics"] == []
    (w,) = r["windows"]
    assert (w["requests"], w["errors_5xx"], w["latency_observations"]) == (20, 1, 20)
    # 1 of 20 is 5 %: not above max_error_ratio=0.05
    assert (w["error_ratio"], r["verdict"]) == (0.05, "promote")


# ------------------------------------------------------------------------------------------ parsing


def test_parse_exposition_format_details():
    body = "\n".join([
        "# HELP x_total A counter.",
        "# TYPE x_total counter",
        'x_total{a="q\\"uote",b="back\\\\slash",c="new\\nline",} 3 1767225600000',
        'x_total{a="plain"} +Inf',
        "x_total NaN",
        'y_bucket{le="+Inf"} 4.0 # {trace_id="abc"} 0.5 1767225600.0',
        'z{path="/a#b"} 1e+03',
        "# EOF",
    ])
    expo = sa.parse_exposition(body)
    (l1, v1), (l2, v2), (l3, v3) = expo.get("x_total")
    assert l1 == {"a": 'q"uote', "b": "back\\slash", "c": "new\nline"} and v1 == 3.0
    assert (l2, v2) == ({"a": "plain"}, math.inf)
    assert l3 == {} and math.isnan(v3)
    assert expo.get("y_bucket") == [({"le": "+Inf"}, 4.0)]
    assert expo.get("z") == [({"path": "/a#b"}, 1000.0)]
    assert expo.has_family("x") and expo.has_family("y") and not expo.has_family("w")


def test_openmetrics_family_names_are_recognised():
    body = "# TYPE autoglm_requests counter\n# TYPE autoglm_request_latency_seconds histogram\nautoglm_ready 1\n# EOF\n"
    snap = sa.snapshot_from_text(0, 0.0, body, config())
    assert (snap.ok, snap.missing, snap.ready_gauge) == (True, [], 1)


@pytest.mark.parametrize("line", [
    "0bad 1",
    'x{a="1" 2',
    'x{a=1} 2',
    "x",
    "x one",
])
def test_parse_exposition_rejects_malformed_lines(line):
    with pytest.raises(sa.ParseError, match="line 2"):
        sa.parse_exposition("# TYPE x counter\n" + line + "\n")


def test_unparsable_body_is_a_failed_scrape():
    snap = sa.snapshot_from_text(3, 0.0, "<html>502 Bad Gateway</html>", config())
    assert snap.ok is False and snap.ready is False
    assert snap.not_ready_reason().startswith("scrape 3 failed after 1 attempt(s): /metrics is not the Prometheus")


# ----------------------------------------------------------------------------------------- quantile

INF = math.inf


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    # Prometheus' NaN cases are None here
    (0.95, [], None),
    (0.95, [(INF, 10)], None),                         # fewer than two buckets
    (0.95, [(0.5, 3), (1, 10)], None),                 # no +Inf bucket
    (0.95, [(0.5, 0), (1, 0), (INF, 0)], None),        # no observations
    (math.nan, [(1, 1), (INF, 1)], None),
    (-0.1, [(1, 1), (INF, 1)], -INF),
    (1.1, [(1, 1), (INF, 1)], INF),
    # the rank in the +Inf bucket: the highest finite bound
    (0.95, [(0.5, 1), (1, 2), (INF, 10)], 1.0),
    (0.95, [(0.5, 0), (1, 0), (INF, 7)], 1.0),
    # the lowest bucket interpolates from 0 when its bound is positive, else gives its bound
    (0.5, [(1, 10), (INF, 10)], 0.5),
    (0.5, [(0, 10), (INF, 10)], 0.0),
    (0.5, [(-1, 10), (0, 10), (INF, 10)], -1.0),
    # empty buckets below the rank are skipped: 19th of 20 lies 9/10 into (0.5, 1]
    (0.95, [(0.1, 10), (0.25, 10), (0.5, 10), (1, 20), (INF, 20)], 0.95),
    # empty buckets above the rank do not matter
    (0.5, [(0.1, 0), (0.25, 4), (0.5, 4), (1, 4), (2.5, 4), (INF, 4)], 0.175),
    # a rank exactly on a bucket's upper bound
    (0.95, [(0.5, 95), (1, 100), (INF, 100)], 0.5),
    (1.0, [(0.5, 5), (1, 10), (INF, 10)], 1.0),
    # not monotonic (a bucket read mid-update): the envelope is used
    (0.95, [(0.5, 10), (1, 8), (INF, 10)], 0.475),
    # unsorted, with a bound twice (two series summed): merged first
    (0.95, [(INF, 10), (1, 10), (0.5, 3), (0.5, 2)], 0.95),
    # the autoglm server's buckets, P95 of 200 observations: 170 in (0.5, 1], 30 in (1, 2.5]
    (0.95, [(0.5, 0), (1, 170), (2.5, 200), (5, 200), (300, 200), (INF, 200)], 2.0),
])
def test_bucket_quantile(q, buckets, expected):
    got = sa.bucket_quantile(q, buckets)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


# ------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(("opts", "fragment"), [
    ({"url": "ftp://host/metrics"}, "url must use http:// or https://"),
    ({"url": "http:///metrics"}, "url has no host"),
    ({"url": "http://host:99999/metrics"}, "url has a bad port"),
    ({"health_url": "health/ready"}, "health_url must use http:// or https://"),
    ({"metrics_flavour": "tgi"}, "metrics_flavour must be one of autoglm, vllm"),
    ({"endpoints": []}, "endpoints must list at least one generation route"),
    ({"endpoints": ["v1/completions"]}, "endpoints must be route paths starting with '/'"),
    ({"interval": 0}, "interval must be > 0"),
    ({"interval": math.inf}, "interval must be a finite number"),
    ({"iterations": 0}, "iterations must be an integer >= 1"),
    ({"min_requests": 0}, "min_requests must be an integer >= 1"),
    ({"max_error_ratio": 1.5}, "max_error_ratio must be <= 1 (a ratio in [0, 1]: 0.05 means 5 %), got 1.5"),
    ({"max_error_ratio": -0.01}, "max_error_ratio must be >= 0"),
    ({"max_error_ratio": math.nan}, "max_error_ratio must be a finite number"),
    ({"max_latency_seconds": 0}, "max_latency_seconds must be > 0 (positive seconds"),
    ({"max_latency_seconds": -1.0}, "max_latency_seconds must be > 0"),
    ({"latency_quantile": 0}, "latency_quantile must be > 0"),
    ({"latency_quantile": 95}, "latency_quantile must be <= 1 (a quantile in (0, 1]: 0.95 is P95)"),
    ({"timeout": 0}, "timeout must be > 0"),
    ({"retries": -1}, "retries must be an integer >= 0"),
    ({"retry_delay": -1}, "retry_delay must be >= 0"),
    ({"ca_path": "/etc/ssl/certs/ca-certificates.crt"}, "ca_path is only used for https URLs"),
    ({"url": "https://h/metrics", "ca_path": "/nonexistent/ca.pem"}, "ca_path /nonexistent/ca.pem cannot be read"),
])
def test_bad_options_are_refused_with_the_option_and_the_fix(opts, fragment):
    with pytest.raises(sa.AnalysisError) as err:
        config(**opts)
    assert fragment in str(err.value)


def test_every_bad_option_is_reported_at_once():
    with pytest.raises(sa.AnalysisError) as err:
        config(iterations=0, max_error_ratio=2, max_latency_seconds=0)
    msg = str(err.value)
    assert msg.startswith("serve_analysis: ")
    assert "iterations" in msg and "max_error_ratio" in msg and "max_latency_seconds" in msg


def test_token_in_clear_text_to_a_remote_host_warns():
    assert config(url="http://10.0.0.7:8001/metrics", token="t").warnings == [
        "url sends the bearer token in clear text to 10.0.0.7; use https or a loopback address"]
    assert config(url="http://127.0.0.1:8001/metrics", token="t").warnings == []
    assert config(url="http://10.0.0.7:8001/metrics").warnings == []


def test_defaults_match_the_module_documentation():
    with open(os.path.join(ROOT, "plugins", "modules", "serve_analysis.py")) as f:
        src = f.read()
    doc = yaml.safe_load(src.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])
    documented = {name: spec.get("default") for name, spec in doc["options"].items()}
    assert documented == sa.DEFAULTS


# ----------------------------------------------------------------------------- prober, over real HTTP


def prober_config(srv, **kw):
    kw.setdefault("url", srv.url)
    kw.setdefault("interval", 0.05)
    kw.setdefault("iterations", 1)
    kw.setdefault("retries", 2)
    kw.setdefault("retry_delay", 0.01)
    kw.setdefault("timeout", 5)
    return sa.Config.from_params(kw)


def test_prober_scrapes_on_schedule_with_token_and_health():
    with MetricsServer([text("autoglm-00-baseline"), text("autoglm-01-healthy")], token="s3cret") as srv:
        cfg = prober_config(srv, token="s3cret", health_url=srv.base + "/health/ready", interval=0.2)
        snaps = sa.Prober(cfg).run()
        assert [s.ok for s in snaps] == [True, True] and all(s.ready for s in snaps)
        assert snaps[1].at - snaps[0].at == pytest.approx(0.2, abs=0.1)
        assert srv.paths() == ["/metrics", "/health/ready"] * 2
        assert {h["Authorization"] for _p, h in srv.requests} == {"Bearer s3cret"}
        assert "text/plain;version=0.0.4" in srv.requests[0][1]["Accept"]
        r = sa.analyse(snaps, cfg)
        assert r["verdict"] == "promote" and r["windows"][0]["requests"] == 202


def test_prober_retries_within_the_iteration():
    with MetricsServer([text("autoglm-00-baseline"), text("autoglm-01-healthy")]) as srv:
        srv.metrics_faults = [503, "drop"]  # the first two attempts of scrape 0 fail; the third gets an answer
        snaps = sa.Prober(prober_config(srv)).run()
        assert [(s.ok, s.attempts) for s in snaps] == [(True, 3), (True, 1)]


def test_prober_gives_up_after_retries_and_counts_not_ready():
    with MetricsServer([text("autoglm-00-baseline")]) as srv:
        srv.metrics_faults = [500, 500, 500]
        snap = sa.Prober(prober_config(srv)).scrape(0)
        assert (snap.ok, snap.attempts, snap.ready) == (False, 3, False)
        assert snap.error == "%s answered HTTP 500" % srv.url


def test_prober_wrong_token_says_so():
    with MetricsServer([text("autoglm-00-baseline")], token="right") as srv:
        snap = sa.Prober(prober_config(srv, token="wrong", retries=0)).scrape(0)
        assert snap.error == "%s answered HTTP 401 (check token)" % srv.url


def test_prober_unreachable_port():
    with MetricsServer([""]) as srv:
        url = srv.url
    snap = sa.Prober(prober_config(srv, url=url, retries=1)).scrape(0)
    assert (snap.ok, snap.attempts) == (False, 2)
    assert "ConnectionRefusedError" in snap.error


def test_prober_follows_same_origin_redirects_only():
    with MetricsServer([text("autoglm-00-baseline")]) as srv:
        srv.redirect_metrics = "http://127.0.0.2:1/metrics"
        snap = sa.Prober(prober_config(srv, retries=0, token="t")).scrape(0)
        assert snap.ok is False and "redirected to another origin (http://127.0.0.2:1)" in snap.error
        srv.redirect_metrics = "/metrics-moved"  # same origin: followed (and answered 404 there)
        snap = sa.Prober(prober_config(srv, retries=0)).scrape(0)
        assert snap.error == "%s answered HTTP 404" % srv.url


def test_prober_health_not_ready_answer_is_not_retried():
    with MetricsServer([text("autoglm-00-baseline")], health=[503, 200]) as srv:
        snap = sa.Prober(prober_config(srv, health_url=srv.base + "/health/ready")).scrape(0)
        assert (snap.ok, snap.ready, snap.health_ok) == (True, False, False)
        assert srv.paths().count("/health/ready") == 1


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=serve-analysis test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
            "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")
    return str(d / "ca.pem"), (str(d / "srv.pem"), str(d / "srv.key"))


def test_prober_https_with_ca_path(tls_files):
    ca, pair = tls_files
    with MetricsServer([text("autoglm-00-baseline")], tls=pair) as srv:
        assert srv.url.startswith("https://")
        snap = sa.Prober(prober_config(srv, ca_path=ca)).scrape(0)
        assert snap.ok and snap.ready
        snap = sa.Prober(prober_config(srv, retries=0)).scrape(0)  # the system CAs do not know the test CA
        assert snap.ok is False and "CERTIFICATE_VERIFY_FAILED" in snap.error
