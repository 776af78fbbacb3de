"""Record the /metrics expositions the serve_analysis tests read (the *.prom files next to this script).

    .venv/bin/python tests/unit/fixtures_serve_analysis/record.py

autoglm-*.prom come from the model server's own Metrics class (containers/model-server) rendered by
prometheus_client's generate_latest, exactly as the server's /metrics answers; the traffic is replayed the way
the server's middleware and request path record it (every response counted by route and status; latency
observed for requests the engine admitted, including those the engine failed with 500). vllm-*.prom use the
names, labels and buckets of vLLM's OpenAI server: prometheus-fastapi-instrumentator's http_requests_total
(handler, method, status grouped as 2xx/5xx) and the v1 engine's vllm:e2e_request_latency_seconds
(model_name, engine). _created timestamps are pinned so the files do not change between recordings.

Sequences (each later file is the same process some seconds after the one it derives from):
  autoglm-00-baseline -> autoglm-01-healthy -> {02-5xx-spike, 03-slow, 04-restarted, 05-idle, 06-few, 07-draining}
  autoglm-10-restart-a -> autoglm-11-restart-b (restarted; every series grew, only _created tells)
  vllm-00-baseline -> vllm-01-healthy -> vllm-02-5xx-spike
"""

import os
import random
import sys
from unittest import mock

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(ROOT, "containers", "model-server", "src"))
from autoglm_server.metrics import Metrics  # noqa: E402

T1 = 1767225600.0  # the first server process started (2026-01-01T00:00:00Z)
T2 = T1 + 3600.0  # the restarted one
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
VLLM_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                480.0, 960.0, 1920.0, 7680.0)


class AutoglmServer:
    """The model server's metrics, fed the way app.py feeds them."""

    def __init__(self, started):
        with mock.patch("time.time", return_value=started):
            self.m = Metrics()
            # Children the server creates at start (prometheus_client stamps _created on first use).
            self.m.ready.set(0)
            self.m.model_load.set(4.2)
            self.m.requests.labels(endpoint="/health/ready", status="503").inc()
        self.started = started
        self.rng = random.Random(started)  # noqa: S311 - reproducible test data, not secrets
        self.log = []

    def fork(self):
        """The same process, for another continuation (prometheus_client metrics do not copy)."""
        twin = AutoglmServer(self.started)
        for method, args in self.log:
            getattr(twin, method)(*args)
        twin.rng.setstate(self.rng.getstate())
        return twin

    def _at(self):
        return mock.patch("time.time", return_value=self.started + 1.0)

    def ready(self, value=1):
        self.log.append(("ready", (value,)))
        self.m.ready.set(value)

    def probes(self, n):
        self.log.append(("probes", (n,)))
        with self._at():
            for _i in range(n):
                self.m.requests.labels(endpoint="/health/ready", status="200").inc()
                self.m.requests.labels(endpoint="/metrics", status="200").inc()

    def generate(self, endpoint, status, latencies):
        """Requests the engine admitted: counted and observed (200, or 500 for an engine failure)."""
        self.log.append(("generate", (endpoint, status, latencies)))
        with self._at():
            for seconds in latencies:
                self.m.requests.labels(endpoint=endpoint, status=str(status)).inc()
                self.m.latency.labels(endpoint=endpoint).observe(seconds)
                if status == 200:
                    self.m.prompt_tokens.inc(120)
                    self.m.generation_tokens.inc(40)
                else:
                    self.m.engine_failures.labels(cause="server").inc()
                    self.m.errors.labels(kind="engine_error").inc()

    def reject(self, endpoint, status, n, kind):
        """Requests answered before the engine (400 validation, 503 not ready): counted, not observed."""
        self.log.append(("reject", (endpoint, status, n, kind)))
        with self._at():
            for _i in range(n):
                self.m.requests.labels(endpoint=endpoint, status=str(status)).inc()
                self.m.errors.labels(kind=kind).inc()

    def uniform(self, n, low, high):
        return [round(self.rng.uniform(low, high), 4) for _i in range(n)]

    def text(self):
        return generate_latest(self.m.registry).decode()


class VllmServer:
    """The metric families of vLLM's OpenAI server that the analysis reads, plus a few it does not."""

    def __init__(self, started):
        self.r = r = CollectorRegistry()
        self.started = started
        self.rng = random.Random(started)  # noqa: S311 - reproducible test data, not secrets
        with mock.patch("time.time", return_value=started):
            self.http = Counter("http_requests_total", "Total number of requests by method, status and handler.",
                                ["method", "status", "handler"], registry=r)
            self.highr = Histogram("http_request_duration_highr_seconds",
                                   "Latency with many buckets but no API specific labels. Made for more accurate "
                                   "percentile calculations. ", registry=r)
            self.success = Counter("vllm:request_success", "Count of successfully processed requests.",
                                   ["model_name", "engine", "finished_reason"], registry=r)
            self.running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                                 ["model_name", "engine"], registry=r)
            self.waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                                 ["model_name", "engine"], registry=r)
            self.kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                            ["model_name", "engine"], registry=r)
            self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                                 ["model_name", "engine"], buckets=VLLM_BUCKETS, registry=r)
            labels = {"model_name": "zai-org/AutoGLM-Phone-9B", "engine": "0"}
            self.e2e_child = self.e2e.labels(**labels)
            self.running.labels(**labels).set(0)
            self.waiting.labels(**labels).set(0)
            self.kv.labels(**labels).set(0.0)
            self.labels = labels

    def generate(self, status, latencies, handler=CHAT):
        with mock.patch("time.time", return_value=self.started + 1.0):
            for seconds in latencies:
                self.http.labels(method="POST", status=status, handler=handler).inc()
                self.highr.observe(seconds)
                if status == "2xx":
                    self.e2e_child.observe(seconds)
                    self.success.labels(finished_reason="stop", **self.labels).inc()

    def models(self, n):
        with mock.patch("time.time", return_value=self.started + 1.0):
            self.http.labels(method="GET", status="2xx", handler="/v1/models").inc(n)

    def uniform(self, n, low, high):
        return [round(self.rng.uniform(low, high), 4) for _i in range(n)]

    def text(self):
        return generate_latest(self.r).decode()


def write(name, server):
    with open(os.path.join(HERE, name + ".prom"), "w") as f:
        f.write(server.text())


def main():
    s = AutoglmServer(T1)
    s.ready(1)
    s.probes(30)
    s.generate(CHAT, 200, s.uniform(60, 0.12, 0.45))
    s.generate(COMPLETIONS, 200, s.uniform(10, 0.08, 0.3))
    s.reject(CHAT, 400, 2, "invalid_request_error")
    write("autoglm-00-baseline", s)

    # window: 202 generation requests, 2 engine failures (0.99 %), P95 within (0.25, 0.5]
    s.probes(10)
    s.generate(CHAT, 200, s.uniform(180, 0.1, 0.48) + s.uniform(5, 0.5, 0.9))
    s.generate(COMPLETIONS, 200, s.uniform(15, 0.05, 0.3))
    s.generate(CHAT, 500, [0.02, 0.03])
    write("autoglm-01-healthy", s)
    healthy = s.fork()

    # 5xx spike: 200 requests, 25 engine failures + 15 not-ready 503s = 40 (20 %)
    s.probes(10)
    s.generate(CHAT, 200, s.uniform(160, 0.1, 0.45))
    s.generate(CHAT, 500, s.uniform(25, 0.01, 0.05))
    s.reject(COMPLETIONS, 503, 15, "not_ready")
    write("autoglm-02-5xx-spike", s)

    # slow: 200 requests, 30 of them (15 %) between 1.2 and 2.4 s: P95 in (1, 2.5]
    s = healthy.fork()
    s.probes(10)
    s.generate(CHAT, 200, s.uniform(170, 0.3, 0.9) + s.uniform(30, 1.2, 2.4))
    write("autoglm-03-slow", s)

    # restarted after autoglm-01: a new process, 51 generation requests (1 engine failure) since its start
    s = AutoglmServer(T2)
    s.ready(1)
    s.probes(3)
    s.generate(CHAT, 200, s.uniform(40, 0.1, 0.4))
    s.generate(COMPLETIONS, 200, s.uniform(10, 0.05, 0.2))
    s.generate(CHAT, 500, [0.02])
    write("autoglm-04-restarted", s)

    # idle: only the health checks and scrapes
    s = healthy.fork()
    s.probes(10)
    write("autoglm-05-idle", s)

    # few: 6 generation requests, 1 of them 500
    s = healthy.fork()
    s.probes(10)
    s.generate(CHAT, 200, s.uniform(5, 0.1, 0.4))
    s.generate(CHAT, 500, [0.02])
    write("autoglm-06-few", s)

    # draining: SIGTERM received, ready gauge 0, the last requests finish
    s = healthy.fork()
    s.ready(0)
    s.generate(CHAT, 200, s.uniform(30, 0.1, 0.4))
    write("autoglm-07-draining", s)

    # restart that only _created reveals: the new process already served twice what the old one had
    a = AutoglmServer(T1)
    a.ready(1)
    a.generate(CHAT, 200, [0.2] * 20 + [0.4] * 5)
    write("autoglm-10-restart-a", a)
    b = AutoglmServer(T2)
    b.ready(1)
    b.generate(CHAT, 200, [0.2] * 40 + [0.4] * 10)
    write("autoglm-11-restart-b", b)

    v = VllmServer(T1)
    v.models(3)
    v.generate("2xx", v.uniform(50, 0.35, 0.75))
    write("vllm-00-baseline", v)
    # window: 202 requests, 2 of them 5xx (0.99 %), P95 within (0.5, 0.8]
    v.models(2)
    v.generate("2xx", v.uniform(170, 0.32, 0.7) + v.uniform(30, 0.5, 0.79))
    v.generate("5xx", [0.01, 0.02])
    write("vllm-01-healthy", v)
    # 5xx spike: 200 requests, 50 of them 5xx (25 %)
    v.generate("2xx", v.uniform(150, 0.32, 0.7))
    v.generate("5xx", [0.01] * 50)
    write("vllm-02-5xx-spike", v)


if __name__ == "__main__":
    main()
