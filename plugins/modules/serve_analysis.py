#!/usr/bin/python
# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serve_analysis
short_description: Judge a model server colour from its Prometheus metrics (5xx ratio, latency quantile, readiness)
version_added: 0.1.0
description:
  - Reads a model server's Prometheus C(/metrics) (O(url)) O(iterations) + 1 times, O(interval) seconds apart.
    The first scrape is the baseline; each later one closes an analysis window. Every number is computed from
    counter and histogram B(deltas) between scrapes, so traffic from before the analysis does not count.
  - "Gate C(error_ratio): 5xx responses over all responses of the generation endpoints (O(endpoints)). Above
    O(max_error_ratio) (default 5 %): verdict V(rollback)."
  - "Gate C(latency): the O(latency_quantile) (default P95) of the server's request latency histogram, computed
    like Prometheus' C(histogram_quantile): linear interpolation within the bucket that holds the rank. Above
    O(max_latency_seconds) (default 1 s): verdict V(halt) (the rollout stops with the old version serving)."
  - "Gate C(ready): every scrape must answer (after O(retries)), the server's ready gauge (C(autoglm_ready)) must
    be 1, and O(health_url), when set, must answer 2xx. A scrape that fails any of these fails its window:
    verdict V(rollback). Readiness is judged whatever the traffic."
  - A window with fewer than O(min_requests) requests (latency observations, for the latency gate) is
    B(no data) - it neither passes nor fails the error and latency gates. The same gates are also applied to the
    whole analysis (the sum of all windows), so a colour with little traffic per window but enough in total is
    still judged. When neither any window nor the whole analysis reached O(min_requests), the verdict is
    V(inconclusive), and RV(passed) follows O(fail_on_no_traffic).
  - "Verdict: V(rollback) when a ready or error_ratio gate failed anywhere; else V(halt) when a latency gate
    failed; else V(inconclusive) when a required metric family is missing (see RV(missing_metrics)) or there was
    too little traffic; else V(promote)."
  - Counter resets are handled as Prometheus' C(rate) function does - a counter that goes down started again
    from zero. Because a restart resets every counter of the process, a decrease in any series read (or a changed
    C(_created) timestamp) counts the whole window from zero; RV(windows[].counter_reset) says so.
  - The module never changes anything and never fails on a bad verdict; the playbook decides what to do with
    RV(verdict). It fails only on bad input (options out of range), before any request.
  - Why a module - the rollout needs a decision from the server's own counters on hosts without a Prometheus
    server; M(ansible.builtin.uri) reads one URL once and cannot compute deltas, resets or histogram quantiles.
author: autoglm.fleet maintainers (@autoglm)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - A read-only probe; check mode scrapes and analyses exactly as a normal run does.
  diff_mode:
    support: none
  idempotent:
    description: Running it again with the same arguments changes nothing.
    support: full
    details:
      - It never changes anything; C(changed) is always V(false). The verdict depends on the server's traffic.
  platform:
    platforms: posix
options:
  url:
    description:
      - The server's Prometheus metrics URL, for example V(http://127.0.0.1:8001/metrics) (the new colour's port).
      - Redirects are followed only to the same scheme, host and port. Environment proxies are not used.
    type: str
    required: true
  metrics_flavour:
    description:
      - Which metric names the server exposes.
      - V(autoglm) - this collection's model server. Requests from C(autoglm_requests_total{endpoint,status}),
        latency from C(autoglm_request_latency_seconds_bucket{endpoint,le}) of the generation endpoints,
        readiness from the C(autoglm_ready) gauge.
      - V(vllm) - vLLM's OpenAI server. Requests from C(http_requests_total{handler,status}) (written by
        prometheus-fastapi-instrumentator; statuses grouped as C(2xx), C(5xx)), latency from the engine's
        C(vllm:e2e_request_latency_seconds_bucket) (every request, it has no route label). vLLM has no ready
        gauge; set O(health_url) to its C(/health).
    type: str
    choices: [autoglm, vllm]
    default: autoglm
  endpoints:
    description:
      - The generation routes whose requests count (the C(endpoint) or C(handler) label). Other routes (health,
        metrics, model list) never count.
    type: list
    elements: str
    default: [/v1/completions, /v1/chat/completions]
  health_url:
    description:
      - Also C(GET) this URL at every scrape; an answer other than 2xx makes that scrape not ready.
      - For example V(http://127.0.0.1:8001/health/ready) (autoglm) or V(http://127.0.0.1:8001/health) (vLLM).
    type: str
  token:
    description:
      - Bearer token sent with every request (C(Authorization) header), for a server that protects its metrics.
      - Sent only to O(url) and O(health_url) (and same-origin redirects). A warning is given when it would cross
        the network in clear text (plain http to a host that is not loopback).
    type: str
  ca_path:
    description:
      - PEM file of the CA that signed the server's certificate, for https URLs. Without it the system's CAs
        are used. Certificates are always verified.
    type: path
  interval:
    description:
      - Seconds between scrapes, that is the length of a window. Scrapes are scheduled from the start, so slow
        scrapes do not stretch the analysis.
    type: float
    default: 30
  iterations:
    description:
      - Number of windows. The analysis takes about O(iterations) * O(interval) seconds.
    type: int
    default: 5
  min_requests:
    description:
      - Requests a window needs before its 5xx ratio is judged, and latency observations before its latency is.
        A window below it is "no data".
    type: int
    default: 20
  max_error_ratio:
    description:
      - Highest acceptable share of 5xx responses, from 0 to 1 (V(0.05) is 5 %). Above it, verdict V(rollback).
    type: float
    default: 0.05
  max_latency_seconds:
    description:
      - Highest acceptable O(latency_quantile) latency in seconds. Above it, verdict V(halt).
    type: float
    default: 1.0
  latency_quantile:
    description:
      - The latency quantile compared with O(max_latency_seconds), in (0, 1]; V(0.95) is P95.
    type: float
    default: 0.95
  fail_on_no_traffic:
    description:
      - Whether an V(inconclusive) verdict for lack of traffic (no generation request at all, or fewer than
        O(min_requests) over the whole analysis) makes RV(passed) false.
      - Set it to V(false) for sites without traffic and without a synthetic probe load; a missing metric family
        never passes.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each HTTP answer.
    type: float
    default: 10
  retries:
    description:
      - Extra attempts when a scrape gets no answer, an answer other than 2xx, or a body that is not the Prometheus
        text format. After the last one the scrape counts as not ready.
    type: int
    default: 2
  retry_delay:
    description:
      - Seconds between attempts.
    type: float
    default: 1
notes:
  - The verdict is not a failure; test RV(verdict) or RV(passed) in the next task. RV(msg) is one line naming the
    gate that decided it with its numbers.
  - A quantile that falls in the C(+Inf) bucket is reported as the highest finite bucket bound (as Prometheus
    does); the autoglm server's buckets reach 300 s.
seealso:
  - name: Prometheus histogram_quantile
    description: The interpolation this module reproduces.
    link: https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile
"""

EXAMPLES = r"""
- name: Analyse the green colour for 5 windows of 30 s
  autoglm.fleet.serve_analysis:
    url: http://127.0.0.1:8002/metrics
    health_url: http://127.0.0.1:8002/health/ready
  register: analysis

- name: Roll back when the analysis says so
  ansible.builtin.debug:
    msg: "{{ analysis.msg }}"
  when: analysis.verdict == 'rollback'

- name: Stop the rollout unless the colour passed
  ansible.builtin.assert:
    that: analysis.passed
    fail_msg: "{{ analysis.msg }}"
    success_msg: "{{ analysis.msg }}"

- name: A vLLM colour behind a TLS front that wants a token, stricter gates, a site without steady traffic
  autoglm.fleet.serve_analysis:
    url: https://gpu07.example.net:8443/metrics
    health_url: https://gpu07.example.net:8443/health
    metrics_flavour: vllm
    ca_path: /etc/autoglm/tls/ca.pem
    token: "{{ vault_metrics_token }}"
    interval: 60
    iterations: 10
    min_requests: 50
    max_error_ratio: 0.01
    max_latency_seconds: 2.5
    latency_quantile: 0.99
    fail_on_no_traffic: false
  register: analysis
"""

RETURN = r"""
verdict:
  description:
    - V(promote), V(rollback) (a ready or 5xx gate failed), V(halt) (the latency gate failed) or V(inconclusive)
      (too little traffic, or a metric family missing).
  returned: always
  type: str
  choices: [promote, rollback, halt, inconclusive]
  sample: rollback
passed:
  description:
    - Whether the colour may be promoted - V(true) for V(promote), and for an V(inconclusive) verdict for lack of
      traffic when O(fail_on_no_traffic=false).
  returned: always
  type: bool
  sample: false
gate:
  description:
    - The gate that decided a verdict other than V(promote) - V(ready), V(error_ratio), V(latency), V(traffic)
      (too little traffic) or V(metrics) (missing metric families); V(null) for V(promote).
  returned: always
  type: str
  sample: error_ratio
msg:
  description: One line for an operator - the verdict, the gate that decided it and its numbers, and the totals.
  returned: always
  type: str
  sample: "rollback: 5xx ratio 10 % above 5 % in window 2 (20 of 200 requests); totals: 402 generation
    requests in 2 windows over 60 s, 5xx 5.47 %, P95 0.46 s"
failed_gates:
  description: Every gate failure, per window and for the whole analysis (V(window=overall)).
  returned: always
  type: list
  elements: dict
  sample: [{"gate": "error_ratio", "window": 2, "value": 0.1, "threshold": 0.05, "requests": 200,
            "errors_5xx": 20, "verdict": "rollback"}]
  contains:
    gate:
      description: V(ready), V(error_ratio) or V(latency).
      type: str
    window:
      description: The window number (from 1), or V(overall).
      type: raw
    value:
      description: The measured 5xx ratio or latency in seconds (not for V(ready)).
      type: float
    threshold:
      description: The option it was compared with (not for V(ready)).
      type: float
    requests:
      description: Requests (5xx gate) or latency observations (latency gate) behind the value.
      type: int
    errors_5xx:
      description: 5xx responses (5xx gate only).
      type: int
    reason:
      description: Why the window is not ready (ready gate only).
      type: str
    verdict:
      description: The verdict this failure leads to.
      type: str
windows:
  description: One entry per window, in order.
  returned: always
  type: list
  elements: dict
  sample: [{"window": 1, "seconds": 30.0, "status": "pass", "failed_gates": [], "ready": true,
            "not_ready_reason": null, "counter_reset": false, "requests": 202, "errors_5xx": 2,
            "error_ratio": 0.009901, "latency_observations": 200, "latency_seconds": 0.4375}]
  contains:
    window:
      description: Window number, from 1.
      type: int
    seconds:
      description: Time between the two scrapes the window spans (longer when a scrape failed in between).
      type: float
    status:
      description: V(pass), V(fail) or V(no_data) (below O(min_requests), and ready).
      type: str
    failed_gates:
      description: Names of the gates that failed in this window.
      type: list
      elements: str
    ready:
      description: Whether the window's scrapes (for window 1 also the baseline) were all ready.
      type: bool
    not_ready_reason:
      description: Why not, or V(null).
      type: str
    counter_reset:
      description: Whether the server restarted during the window (its counters were counted from zero).
      type: bool
    requests:
      description: Generation requests answered in the window, any status.
      type: int
    errors_5xx:
      description: Those answered with a 5xx status.
      type: int
    error_ratio:
      description: RV(windows[].errors_5xx) / RV(windows[].requests); V(null) without requests.
      type: float
    latency_observations:
      description: Requests observed by the latency histogram in the window.
      type: int
    latency_seconds:
      description: The O(latency_quantile) latency in seconds; V(null) without observations.
      type: float
totals:
  description: The same numbers over the whole analysis, plus counts of windows and scrapes.
  returned: always
  type: dict
  sample: {"requests": 402, "errors_5xx": 22, "error_ratio": 0.054726, "latency_observations": 380,
           "latency_seconds": 0.4625, "seconds": 60.0, "windows": 2, "windows_passed": 1, "windows_failed": 1,
           "windows_no_data": 0, "scrapes": 3, "scrapes_failed": 0, "scrapes_not_ready": 0, "counter_resets": 0,
           "judged": true}
thresholds:
  description: The gate options the analysis ran with.
  returned: always
  type: dict
  sample: {"max_error_ratio": 0.05, "max_latency_seconds": 1.0, "latency_quantile": 0.95, "min_requests": 20,
           "fail_on_no_traffic": true}
missing_metrics:
  description: Required metric families absent from at least one answered scrape.
  returned: always
  type: list
  elements: str
  sample: []
metrics_flavour:
  description: O(metrics_flavour), as used.
  returned: always
  type: str
  sample: autoglm
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.autoglm.fleet.plugins.module_utils._serve_analysis import (
    GENERATION_ENDPOINTS,
    AnalysisError,
    run_analysis,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "metrics_flavour": {"type": "str", "default": "autoglm", "choices": ["autoglm", "vllm"]},
            "endpoints": {"type": "list", "elements": "str", "default": list(GENERATION_ENDPOINTS)},
            "health_url": {"type": "str"},
            "token": {"type": "str", "no_log": True},
            "ca_path": {"type": "path"},
            "interval": {"type": "float", "default": 30},
            "iterations": {"type": "int", "default": 5},
            "min_requests": {"type": "int", "default": 20},
            "max_error_ratio": {"type": "float", "default": 0.05},
            "max_latency_seconds": {"type": "float", "default": 1.0},
            "latency_quantile": {"type": "float", "default": 0.95},
            "fail_on_no_traffic": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 10},
            "retries": {"type": "int", "default": 2},
            "retry_delay": {"type": "float", "default": 1},
        },
        supports_check_mode=True,
    )
    try:
        result = run_analysis(module.params)
    except AnalysisError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
