# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Metric-gated analysis of a model server colour from its Prometheus ``/metrics`` (standard library only).

The analysis scrapes ``/metrics`` ``iterations + 1`` times, ``interval`` seconds apart: scrape 0 is the
baseline, and window ``i`` is the difference between scrape ``i`` and the last good scrape before it.
Every number comes from counter and histogram DELTAS, never from absolute values, so the traffic the
server saw before the analysis (the smoke test, another rollout) does not count.

Gates, per window and over the whole analysis (the sum of the windows):

* ``ready``       - every scrape answered (after retries), the ready gauge is 1 (where the flavour has one)
                    and ``health_url`` answered 2xx (where set). Judged whatever the traffic. Fails: rollback.
* ``error_ratio`` - 5xx responses / all responses of the generation endpoints, judged when the window has
                    at least ``min_requests`` requests. Above ``max_error_ratio``: rollback.
* ``latency``     - the ``latency_quantile`` (P95) of the latency histogram, interpolated within its bucket
                    like Prometheus' ``histogram_quantile``, judged when the window has at least
                    ``min_requests`` observations. Above ``max_latency_seconds``: halt.

A window below ``min_requests`` is "no data": it neither passes nor fails the traffic gates (readiness is
still judged). Verdict: ``rollback`` when a ready or error_ratio gate failed anywhere, else ``halt`` when a
latency gate failed, else ``inconclusive`` when a required metric family is missing or when neither any
window nor the analysis as a whole reached ``min_requests``, else ``promote``. Judging the whole analysis as
well means a colour with too little traffic per window, but enough over the analysis, is still judged (a
colour answering 5xx to its few requests cannot pass as "no data").

Counter resets: a counter that goes down (or a series whose ``_created`` timestamp changed) means the server
restarted. Like Prometheus' ``rate()``, the count starts again from the new value; since a restart resets
every counter of the process, the whole window is then counted from zero (the new values), not only the
series that went down.

Nothing here changes anything on the host: the module is a probe.
"""

from __future__ import annotations

import http.client
import math
import re
import ssl
import time
import urllib.parse

GENERATION_ENDPOINTS = ("/v1/completions", "/v1/chat/completions")
MAX_BODY = 32 * 1024 * 1024
ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"

# Metric names per server. ``requests``: a counter labelled by route and HTTP status; ``latency``: a
# histogram of end-to-end request latency; ``ready``: a 0/1 gauge (None: the server has none).
FLAVOURS = {
    # containers/model-server/src/autoglm_server/metrics.py (prometheus_client, status "200", "503" ...)
    "autoglm": {
        "requests": "autoglm_requests",
        "route_label": "endpoint",
        "status_label": "status",
        "latency": "autoglm_request_latency_seconds",
        "latency_route_label": "endpoint",
        "ready": "autoglm_ready",
    },
    # vLLM's OpenAI server: prometheus-fastapi-instrumentator's default metrics (status grouped as "2xx",
    # "5xx"; handler = route template) and the engine's end-to-end latency histogram (labels model_name,
    # engine; no route label, so every generation request counts). vLLM has no ready gauge: readiness is
    # "/metrics answers" plus its /health (health_url).
    "vllm": {
        "requests": "http_requests",
        "route_label": "handler",
        "status_label": "status",
        "latency": "vllm:e2e_request_latency_seconds",
        "latency_route_label": None,
        "ready": None,
    },
}

VERDICT_PROMOTE = "promote"
VERDICT_ROLLBACK = "rollback"
VERDICT_HALT = "halt"
VERDICT_INCONCLUSIVE = "inconclusive"

_GATE_VERDICT = {"ready": VERDICT_ROLLBACK, "error_ratio": VERDICT_ROLLBACK, "latency": VERDICT_HALT}


class AnalysisError(ValueError):
    """Bad input: the analysis cannot start. The message says which option and what to do."""


class ParseError(ValueError):
    """A /metrics body that is not the Prometheus text format."""


# --------------------------------------------------------------------------------------------- config


# Option defaults (the module's argument spec says the same; a unit test keeps them in step).
DEFAULTS = {
    "url": None,
    "metrics_flavour": "autoglm",
    "endpoints": list(GENERATION_ENDPOINTS),
    "health_url": None,
    "token": None,
    "ca_path": None,
    "interval": 30.0,
    "iterations": 5,
    "min_requests": 20,
    "max_error_ratio": 0.05,
    "max_latency_seconds": 1.0,
    "latency_quantile": 0.95,
    "fail_on_no_traffic": True,
    "timeout": 10.0,
    "retries": 2,
    "retry_delay": 1.0,
}


class Config:
    """Validated options. ``Config.from_params(dict)`` raises AnalysisError naming every bad option."""

    def __init__(self, **kwargs):
        for name, default in DEFAULTS.items():
            value = kwargs.get(name)
            if value is None and default is not None:
                value = list(default) if isinstance(default, list) else default
            setattr(self, name, value)
        self.warnings = []

    @classmethod
    def from_params(cls, params):
        cfg = cls(**params)
        errors = cfg.validate()
        if errors:
            raise AnalysisError("serve_analysis: %s" % "; ".join(errors))
        return cfg

    @property
    def flavour(self):
        return FLAVOURS[self.metrics_flavour]

    def validate(self):
        """Return every problem as a sentence; fill self.warnings."""
        errors = []
        for name in ("url", "health_url"):
            value = getattr(self, name)
            if value is None and name == "health_url":
                continue
            problem = _url_problem(value)
            if problem:
                errors.append("%s %s" % (name, problem))
        if self.metrics_flavour not in FLAVOURS:
            errors.append("metrics_flavour must be one of %s, got %r" % (", ".join(sorted(FLAVOURS)),
                                                                         self.metrics_flavour))
        if not isinstance(self.endpoints, list) or not self.endpoints:
            errors.append("endpoints must list at least one generation route, e.g. /v1/chat/completions")
        else:
            bad = [e for e in self.endpoints if not isinstance(e, str) or not e.startswith("/")]
            if bad:
                errors.append("endpoints must be route paths starting with '/', got %s" % ", ".join(map(repr, bad)))
        _check_number(errors, "interval", self.interval, low=0, low_open=True,
                      hint="seconds between scrapes, e.g. 30")
        _check_int(errors, "iterations", self.iterations, 1, "the number of analysis windows, e.g. 5")
        _check_int(errors, "min_requests", self.min_requests, 1,
                   "requests a window needs before its 5xx ratio and latency are judged, e.g. 20")
        _check_number(errors, "max_error_ratio", self.max_error_ratio, low=0, high=1,
                      hint="a ratio in [0, 1]: 0.05 means 5 %")
        _check_number(errors, "max_latency_seconds", self.max_latency_seconds, low=0, low_open=True,
                      hint="positive seconds, e.g. 1.0")
        _check_number(errors, "latency_quantile", self.latency_quantile, low=0, high=1, low_open=True,
                      hint="a quantile in (0, 1]: 0.95 is P95")
        _check_number(errors, "timeout", self.timeout, low=0, low_open=True, hint="positive seconds per request")
        _check_int(errors, "retries", self.retries, 0, "extra attempts per scrape, 0 or more")
        _check_number(errors, "retry_delay", self.retry_delay, low=0, hint="seconds between attempts, 0 or more")
        if not isinstance(self.fail_on_no_traffic, bool):
            errors.append("fail_on_no_traffic must be true or false")
        if self.ca_path is not None:
            urls = [u for u in (self.url, self.health_url) if isinstance(u, str)]
            if not any(u.lower().startswith("https://") for u in urls):
                errors.append("ca_path is only used for https URLs; url is %s: drop ca_path or use https"
                              % self.url)
            else:
                try:
                    ssl.create_default_context(cafile=self.ca_path)
                except (OSError, ssl.SSLError) as exc:
                    errors.append("ca_path %s cannot be read as a CA bundle (%s)" % (self.ca_path, exc))
        if self.token and not errors:
            for name in ("url", "health_url"):
                value = getattr(self, name)
                if value and _plain_http_remote(value):
                    self.warnings.append("%s sends the bearer token in clear text to %s; use https or a loopback "
                                         "address" % (name, urllib.parse.urlsplit(value).hostname))
        return errors

    def thresholds(self):
        return {
            "max_error_ratio": self.max_error_ratio,
            "max_latency_seconds": self.max_latency_seconds,
            "latency_quantile": self.latency_quantile,
            "min_requests": self.min_requests,
            "fail_on_no_traffic": self.fail_on_no_traffic,
        }


def _url_problem(value):
    if not isinstance(value, str) or not value:
        return "must be an http:// or https:// URL, e.g. http://127.0.0.1:8001/metrics"
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https"):
        return "must use http:// or https://, got %r" % value
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "has a bad port: %r" % value
    if not parts.hostname:
        return "has no host: %r" % value
    return None


def _plain_http_remote(url):
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "http" and host not in ("localhost", "::1") and not host.startswith("127.")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(errors, name, value, low=None, high=None, low_open=False, hint=""):
    if not _is_number(value) or math.isnan(value) or math.isinf(value):
        errors.append("%s must be a finite number (%s), got %r" % (name, hint, value))
        return
    if low is not None and (value <= low if low_open else value < low):
        errors.append("%s must be %s %s (%s), got %r" % (name, ">" if low_open else ">=", low, hint, value))
    elif high is not None and value > high:
        errors.append("%s must be <= %s (%s), got %r" % (name, high, hint, value))


def _check_int(errors, name, value, low, hint):
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        errors.append("%s must be an integer >= %d (%s), got %r" % (name, low, hint, value))


# -------------------------------------------------------------------------------------------- parsing

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class Exposition:
    """Samples of one scrape: ``samples[name] -> [(labels dict, value)]`` and the declared family names."""

    def __init__(self):
        self.samples = {}
        self.declared = set()

    def has_family(self, base):
        """True when the family is declared (# TYPE) or has samples, in the 0.0.4 or OpenMetrics format."""
        names = (base, base + "_total", base + "_bucket", base + "_count")
        return any(n in self.declared or n in self.samples for n in names)

    def get(self, name):
        return self.samples.get(name, [])


def parse_exposition(text):
    """Parse the Prometheus text format (0.0.4, and OpenMetrics' superset as far as samples go)."""
    expo = Exposition()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                expo.declared.add(parts[2])
            continue
        m = _NAME_RE.match(line)
        if not m:
            raise ParseError("line %d is not a sample: %.80r" % (lineno, line))
        name, pos = m.group(0), m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            pos += 1
            if line[pos:pos + 1] == "}":
                pos += 1
            else:
                while True:
                    lm = _LABEL_RE.match(line, pos)
                    if not lm:
                        raise ParseError("line %d has malformed labels: %.80r" % (lineno, line))
                    labels[lm.group(1)] = re.sub(r'\\[\\"n]', lambda e: _UNESCAPE[e.group(0)], lm.group(2))
                    pos = lm.end()
                    if lm.group(3) == "}":
                        break
                    if line[pos:].lstrip().startswith("}"):  # a trailing comma
                        pos = line.index("}", pos) + 1
                        break
        rest = line[pos:].split("#", 1)[0].split()  # drop an OpenMetrics exemplar
        if not rest:
            raise ParseError("line %d has no value: %.80r" % (lineno, line))
        try:
            value = float(rest[0])
        except ValueError:
            raise ParseError("line %d has a value that is not a number: %.80r" % (lineno, line)) from None
        expo.samples.setdefault(name, []).append((labels, value))
    return expo


# ------------------------------------------------------------------------------------------- quantile


def bucket_quantile(q, buckets):
    """Prometheus' histogram_quantile over ``[(upper_bound, cumulative_count)]``; None where it gives NaN.

    Sorted by bound, equal bounds merged, made monotonic; the highest bound must be +Inf. Linear
    interpolation within the bucket holding the rank (from 0 for the lowest bucket when its bound is
    positive); a rank in the +Inf bucket gives the highest finite bound.
    """
    if q is None or math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    items = sorted(merged.items())
    if not items or not math.isinf(items[-1][0]) or items[-1][0] < 0 or len(items) < 2:
        return None
    bounds = [bound for bound, _count in items]
    counts = []
    high = -math.inf
    for _bound, c in items:
        high = max(high, c)
        counts.append(high)
    observations = counts[-1]
    if observations <= 0:
        return None
    rank = q * observations
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count <= 0:
        return start
    return start + (end - start) * (rank / count)


# ------------------------------------------------------------------------------------------ snapshots


class Snapshot:
    """What one scrape says: the relevant series, readiness and missing families."""

    def __init__(self, index, at, ok, error=None, series=None, created=None, ready_gauge=None, missing=(),
                 health_ok=None, health_detail=None, attempts=1):
        self.index = index
        self.at = at
        self.ok = ok
        self.error = error
        self.series = series or {}
        self.created = created or {}
        self.ready_gauge = ready_gauge
        self.missing = list(missing)
        self.health_ok = health_ok
        self.health_detail = health_detail
        self.attempts = attempts

    @property
    def ready(self):
        return self.ok and self.ready_gauge != 0 and self.health_ok is not False

    def not_ready_reason(self):
        if not self.ok:
            return "scrape %d failed after %d attempt(s): %s" % (self.index, self.attempts, self.error)
        if self.ready_gauge == 0:
            return "scrape %d: ready gauge is 0 (loading, warming, draining or failed)" % self.index
        if self.health_ok is False:
            return "scrape %d: health_url %s" % (self.index, self.health_detail)
        return None


def _key(name, labels):
    return (name, tuple(sorted(labels.items())))


def snapshot_from_text(index, at, text, cfg, health_ok=None, health_detail=None, attempts=1):
    """Read the series the analysis needs from one exposition; a body that does not parse is a failed scrape."""
    try:
        expo = parse_exposition(text)
    except ParseError as exc:
        return Snapshot(index, at, False, error="/metrics is not the Prometheus text format (%s)" % exc,
                        health_ok=health_ok, health_detail=health_detail, attempts=attempts)
    fl = cfg.flavour
    endpoints = set(cfg.endpoints)
    series, created, missing = {}, {}, []
    for family, route_label, suffix in ((fl["requests"], fl["route_label"], "_total"),
                                        (fl["latency"], fl["latency_route_label"], "_bucket")):
        if not expo.has_family(family):
            missing.append(family)
            continue
        for labels, value in expo.get(family + suffix):
            if route_label is not None and labels.get(route_label) not in endpoints:
                continue
            series[_key(family + suffix, labels)] = value
        for labels, value in expo.get(family + "_created"):
            if route_label is not None and labels.get(route_label) not in endpoints:
                continue
            created[_key(family, labels)] = value
    ready_gauge = None
    if fl["ready"]:
        samples = expo.get(fl["ready"])
        if samples:
            ready_gauge = 1 if samples[0][1] == 1 else 0
        else:
            missing.append(fl["ready"])
    return Snapshot(index, at, True, series=series, created=created, ready_gauge=ready_gauge, missing=missing,
                    health_ok=health_ok, health_detail=health_detail, attempts=attempts)


def series_delta(prev, cur):
    """Increase of every series from ``prev`` to ``cur``, and whether the server restarted in between."""
    reset = any(value < prev.series[k] for k, value in cur.series.items() if k in prev.series)
    if not reset:
        reset = any(value != prev.created[k] for k, value in cur.created.items() if k in prev.created)
    if reset:
        return dict(cur.series), True
    return {k: v - prev.series.get(k, 0.0) for k, v in cur.series.items()}, False


class Numbers:
    """Requests, 5xx and latency buckets of a window (or of the whole analysis)."""

    def __init__(self):
        self.requests = 0.0
        self.errors = 0.0
        self.buckets = {}

    def add_delta(self, delta, cfg):
        fl = cfg.flavour
        req_name, bucket_name = fl["requests"] + "_total", fl["latency"] + "_bucket"
        for (name, labels), value in delta.items():
            lab = dict(labels)
            if name == req_name:
                self.requests += value
                if str(lab.get(fl["status_label"], "")).startswith("5"):
                    self.errors += value
            elif name == bucket_name:
                try:
                    bound = float(lab.get("le", "nan"))
                except ValueError:
                    continue
                if not math.isnan(bound):
                    self.buckets[bound] = self.buckets.get(bound, 0.0) + value

    def merge(self, other):
        self.requests += other.requests
        self.errors += other.errors
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + count

    @property
    def observations(self):
        return self.buckets.get(math.inf, 0.0)

    def error_ratio(self):
        return self.errors / self.requests if self.requests > 0 else None

    def latency(self, q):
        return bucket_quantile(q, list(self.buckets.items()))

    def judge(self, cfg, where):
        """Gate failures of these numbers (``where``: window number or "overall"), and whether any was judged."""
        failures, judged = [], False
        if self.requests >= cfg.min_requests:
            judged = True
            ratio = self.error_ratio()
            if ratio > cfg.max_error_ratio:
                failures.append({"gate": "error_ratio", "window": where, "value": round(ratio, 6),
                                 "threshold": cfg.max_error_ratio, "requests": _count(self.requests),
                                 "errors_5xx": _count(self.errors), "verdict": VERDICT_ROLLBACK})
        if self.observations >= cfg.min_requests:
            judged = True
            latency = self.latency(cfg.latency_quantile)
            if latency is not None and latency > cfg.max_latency_seconds:
                failures.append({"gate": "latency", "window": where, "value": round(latency, 6),
                                 "threshold": cfg.max_latency_seconds, "requests": _count(self.observations),
                                 "verdict": VERDICT_HALT})
        return failures, judged

    def as_dict(self, cfg):
        ratio = self.error_ratio()
        latency = self.latency(cfg.latency_quantile)
        return {
            "requests": _count(self.requests),
            "errors_5xx": _count(self.errors),
            "error_ratio": None if ratio is None else round(ratio, 6),
            "latency_observations": _count(self.observations),
            "latency_seconds": None if latency is None else round(latency, 6),
        }


def _count(value):
    return round(value)


# ------------------------------------------------------------------------------------------- analysis


def analyse(snapshots, cfg):
    """Turn ``iterations + 1`` snapshots into windows, totals and a verdict (pure: no I/O)."""
    if len(snapshots) < 2:
        raise AnalysisError("serve_analysis needs at least two scrapes (a baseline and one window)")
    windows, failures = [], []
    total = Numbers()
    last_good = snapshots[0] if snapshots[0].ok else None
    resets = 0
    missing = []
    for snap in snapshots:
        if snap.ok:
            missing.extend(m for m in snap.missing if m not in missing)
    for pos in range(1, len(snapshots)):
        snap = snapshots[pos]
        numbers = Numbers()
        reset = False
        base = last_good
        if snap.ok and base is not None:
            delta, reset = series_delta(base, snap)
            numbers.add_delta(delta, cfg)
            resets += int(reset)
        start_at = base.at if (snap.ok and base is not None) else snapshots[pos - 1].at
        reasons = []
        for s in ([snapshots[0], snap] if pos == 1 else [snap]):
            if not s.ready:
                reasons.append(s.not_ready_reason())
        window_failures, judged = numbers.judge(cfg, pos)
        if reasons:
            window_failures.insert(0, {"gate": "ready", "window": pos, "reason": "; ".join(reasons),
                                       "verdict": VERDICT_ROLLBACK})
        failures.extend(window_failures)
        total.merge(numbers)
        if window_failures:
            status = "fail"
        elif judged:
            status = "pass"
        else:
            status = "no_data"
        window = {"window": pos, "seconds": round(snap.at - start_at, 3), "status": status,
                  "failed_gates": [f["gate"] for f in window_failures], "ready": not reasons,
                  "not_ready_reason": "; ".join(reasons) or None, "counter_reset": reset}
        window.update(numbers.as_dict(cfg))
        windows.append(window)
        if snap.ok:
            last_good = snap

    overall_failures, overall_judged = total.judge(cfg, "overall")
    failures.extend(overall_failures)
    totals = total.as_dict(cfg)
    totals.update({
        "seconds": round(snapshots[-1].at - snapshots[0].at, 3),
        "windows": len(windows),
        "windows_passed": sum(w["status"] == "pass" for w in windows),
        "windows_failed": sum(w["status"] == "fail" for w in windows),
        "windows_no_data": sum(w["status"] == "no_data" for w in windows),
        "scrapes": len(snapshots),
        "scrapes_failed": sum(not s.ok for s in snapshots),
        "scrapes_not_ready": sum(not s.ready for s in snapshots),
        "counter_resets": resets,
        "judged": overall_judged,
    })

    gates_failed = {f["gate"] for f in failures}
    if gates_failed & {"ready", "error_ratio"}:
        verdict = VERDICT_ROLLBACK
        gate = "ready" if "ready" in gates_failed else "error_ratio"
    elif "latency" in gates_failed:
        verdict, gate = VERDICT_HALT, "latency"
    elif missing:
        verdict, gate = VERDICT_INCONCLUSIVE, "metrics"
    elif not overall_judged:
        # every window below min_requests implies the sum is too, unless the sum reaches it: then it is judged
        verdict, gate = VERDICT_INCONCLUSIVE, "traffic"
    else:
        verdict, gate = VERDICT_PROMOTE, None
    # Missing metric families never pass: a wrong metrics_flavour or URL must not promote anything.
    passed = verdict == VERDICT_PROMOTE or (gate == "traffic" and not cfg.fail_on_no_traffic)
    result = {
        "verdict": verdict,
        "passed": passed,
        "gate": gate,
        "failed_gates": failures,
        "windows": windows,
        "totals": totals,
        "thresholds": cfg.thresholds(),
        "missing_metrics": missing,
        "metrics_flavour": cfg.metrics_flavour,
    }
    result["msg"] = summary(result, cfg)
    return result


def _pct(ratio):
    return "%.3g %%" % (ratio * 100)


def _secs(value):
    return "%.3g s" % value


def _qname(q):
    return "P%g" % (q * 100)


def _worst(failures, gate):
    """The failure of ``gate`` with the highest value (a window before "overall"), and all of its failures."""
    hits = [f for f in failures if f["gate"] == gate]
    if not hits:
        return None, hits
    windows = [f for f in hits if f["window"] != "overall"] or hits
    return max(windows, key=lambda f: f.get("value", 0)), hits


def _n(count, word):
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


def summary(result, cfg):
    """One line an operator can act on: the verdict, the gate that decided it and its numbers."""
    t, q = result["totals"], _qname(cfg.latency_quantile)

    def where(f):
        return "the whole analysis" if f["window"] == "overall" else "window %s" % f["window"]

    def also(worst, hits, fmt):
        others = [f for f in hits if f is not worst]
        return "" if not others else "; also above in %s" % ", ".join(
            "%s (%s)" % (where(f), fmt(f["value"])) for f in others)

    parts = []
    ready = _worst(result["failed_gates"], "ready")[0]
    if ready:
        parts.append("not ready in %d of %d scrapes (%s)" % (t["scrapes_not_ready"], t["scrapes"], ready["reason"]))
    err, err_hits = _worst(result["failed_gates"], "error_ratio")
    if err:
        parts.append("5xx ratio %s above %s in %s (%d of %d requests)%s" % (
            _pct(err["value"]), _pct(cfg.max_error_ratio), where(err), err["errors_5xx"], err["requests"],
            also(err, err_hits, _pct)))
    lat, lat_hits = _worst(result["failed_gates"], "latency")
    if lat:
        parts.append("%s latency %s above %s in %s (%d requests)%s" % (
            q, _secs(lat["value"]), _secs(cfg.max_latency_seconds), where(lat), lat["requests"],
            also(lat, lat_hits, _secs)))
    numbers = "%s in %s over %s, 5xx %s, %s %s" % (
        _n(t["requests"], "generation request"), _n(t["windows"], "window"), _secs(t["seconds"]),
        "n/a" if t["error_ratio"] is None else _pct(t["error_ratio"]), q,
        "n/a" if t["latency_seconds"] is None else _secs(t["latency_seconds"]))
    verdict = result["verdict"]
    if verdict in (VERDICT_ROLLBACK, VERDICT_HALT):
        return "%s: %s; totals: %s" % (verdict, "; ".join(parts), numbers)
    if verdict == VERDICT_INCONCLUSIVE and result["gate"] == "metrics":
        return ("inconclusive: metric families missing from /metrics: %s (is metrics_flavour=%s right for this "
                "server?); %s; not passed" % (", ".join(result["missing_metrics"]), cfg.metrics_flavour, numbers))
    if verdict == VERDICT_INCONCLUSIVE:
        what = "no traffic" if t["requests"] == 0 and t["latency_observations"] == 0 else "too few requests"
        consequence = "passed anyway (fail_on_no_traffic=false)" if result["passed"] else \
            "not passed (fail_on_no_traffic=true)"
        return ("inconclusive: %s: %s in %s over %s, below min_requests=%d in every window and in total; %s"
                % (what, _n(t["requests"], "generation request"), _n(t["windows"], "window"), _secs(t["seconds"]),
                   cfg.min_requests, consequence))
    return "promote: %s (max 5xx %s, max %s %s); ready in %d of %d scrapes; %d of %d windows with enough traffic" % (
        numbers, _pct(cfg.max_error_ratio), q, _secs(cfg.max_latency_seconds),
        t["scrapes"] - t["scrapes_not_ready"], t["scrapes"], t["windows_passed"], t["windows"])


# ------------------------------------------------------------------------------------------------ I/O


class ScrapeError(Exception):
    """An HTTP request that did not get an answer (refused, timed out, TLS, redirected elsewhere)."""


def _origin(parts):
    return (parts.scheme, parts.hostname, parts.port)


def http_get(url, headers, timeout, ssl_context=None, max_redirects=3, max_body=MAX_BODY):
    """GET ``url``; return (status, body bytes). Follows redirects to the same origin only (the token stays)."""
    first = urllib.parse.urlsplit(url)
    for _hop in range(max_redirects + 1):
        parts = urllib.parse.urlsplit(url)
        if _origin(parts) != _origin(first):
            raise ScrapeError("redirected to another origin (%s://%s); point the URL at the server itself"
                              % (parts.scheme, parts.netloc))
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                               context=ssl_context or ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            conn.request("GET", urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")),
                         headers=headers)
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                resp.read(65536)
                url = urllib.parse.urljoin(url, resp.getheader("Location"))
                continue
            body = resp.read(max_body + 1)
            if len(body) > max_body:
                raise ScrapeError("answer larger than %d bytes" % max_body)
            return resp.status, body
        except (OSError, http.client.HTTPException) as exc:
            raise ScrapeError("%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__) from None
        finally:
            conn.close()
    raise ScrapeError("more than %d redirects" % max_redirects)


class Prober:
    """Scrapes /metrics (and health_url) with retries; ``clock``/``sleep`` are injectable for tests."""

    def __init__(self, cfg, clock=time.monotonic, sleep=time.sleep, get=http_get):
        self.cfg = cfg
        self.clock, self.sleep, self.get = clock, sleep, get
        self.headers = {"Accept": ACCEPT, "User-Agent": "autoglm.fleet.serve_analysis"}
        if cfg.token:
            self.headers["Authorization"] = "Bearer %s" % cfg.token
        self.ssl_context = ssl.create_default_context(cafile=cfg.ca_path) if cfg.ca_path else None

    def _fetch_metrics(self):
        """(text, error, attempts): retried on no answer, non-2xx and unparsable bodies."""
        error = None
        for attempt in range(1, self.cfg.retries + 2):
            if attempt > 1:
                self.sleep(self.cfg.retry_delay)
            try:
                status, body = self.get(self.cfg.url, self.headers, self.cfg.timeout, self.ssl_context)
            except ScrapeError as exc:
                error = "%s: %s" % (self.cfg.url, exc)
                continue
            if 200 <= status < 300:
                text = body.decode("utf-8", "replace")
                try:
                    parse_exposition(text)
                except ParseError as exc:
                    error = "%s is not the Prometheus text format (%s)" % (self.cfg.url, exc)
                    continue
                return text, None, attempt
            error = "%s answered HTTP %d%s" % (self.cfg.url, status,
                                               " (check token)" if status in (401, 403) else "")
        return None, error, self.cfg.retries + 1

    def _fetch_health(self):
        """(ok, detail); an answer (even 503) is not retried, no answer is."""
        detail = None
        for attempt in range(1, self.cfg.retries + 2):
            if attempt > 1:
                self.sleep(self.cfg.retry_delay)
            try:
                status, _body = self.get(self.cfg.health_url, self.headers, self.cfg.timeout, self.ssl_context)
            except ScrapeError as exc:
                detail = "%s did not answer: %s" % (self.cfg.health_url, exc)
                continue
            if 200 <= status < 300:
                return True, "%s answered HTTP %d" % (self.cfg.health_url, status)
            return False, "%s answered HTTP %d" % (self.cfg.health_url, status)
        return False, detail

    def scrape(self, index):
        at = self.clock()
        text, error, attempts = self._fetch_metrics()
        health_ok, health_detail = (None, None)
        if self.cfg.health_url:
            health_ok, health_detail = self._fetch_health()
        if text is None:
            return Snapshot(index, at, False, error=error, health_ok=health_ok, health_detail=health_detail,
                            attempts=attempts)
        return snapshot_from_text(index, at, text, self.cfg, health_ok, health_detail, attempts)

    def run(self):
        """Scrape at start + i * interval for i in 0..iterations (no drift; an overrun scrape is not waited for)."""
        start = self.clock()
        snapshots = []
        for i in range(self.cfg.iterations + 1):
            wait = start + i * self.cfg.interval - self.clock()
            if wait > 0:
                self.sleep(wait)
            snapshots.append(self.scrape(i))
        return snapshots


def run_analysis(params, clock=time.monotonic, sleep=time.sleep, get=http_get):
    """Validate ``params``, scrape, analyse. Raises AnalysisError on bad input only."""
    cfg = Config.from_params(params)
    snapshots = Prober(cfg, clock=clock, sleep=sleep, get=get).run()
    result = analyse(snapshots, cfg)
    result["warnings"] = list(cfg.warnings)
    return result
