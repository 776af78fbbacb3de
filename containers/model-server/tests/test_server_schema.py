"""Schemathesis against the server's own OpenAPI document: no input makes it answer 5xx.

(schemathesis' pytest plugin does not run under pytest 9 here, so the test drives its Hypothesis
strategies directly, one bounded run per API operation.)
"""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

BOUNDED = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


def generated_ok(base: str, metric_value) -> float:
    text = httpx.get(base + "/metrics").text
    return sum(
        metric_value(text, "autoglm_requests_total", f'endpoint="{path}",status="200"')
        for path in ("/v1/completions", "/v1/chat/completions")
    )


def test_no_server_errors_on_generated_inputs(server, metric_value):
    before = generated_ok(server.base, metric_value)
    schema = schemathesis.openapi.from_url(server.base + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(op.label for op in operations)
    assert "POST /v1/completions" in labels and "POST /v1/chat/completions" in labels, labels
    calls = {"n": 0}
    for operation in operations:
        # negative generation needs inputs to break: only the POST operations have a body
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if operation.method.upper() == "POST" else [])
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @BOUNDED
            def run(case):
                calls["n"] += 1
                case.call_and_validate(base_url=server.base, checks=[not_a_server_error])

            run()
    assert calls["n"] >= len(operations)
    # the document names the served model, so generated bodies reach the engine, not only validation
    assert generated_ok(server.base, metric_value) > before
