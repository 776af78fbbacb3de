"""Test-only faults for the rollout end to end (tests/e2e/test_rollouts.py): NEVER part of the product image.

tests/e2e_tooling/images.py builds test images FROM the published model server image, adds this file to its
PYTHONPATH (/opt/autoglm/app) and makes it the entry point. It wraps ``autoglm_server.app.create_app`` and then
runs the server exactly as ``python -m autoglm_server`` does, with one of these faults, set in the test image's
environment:

AUTOGLM_FAULT_500_RATIO     share of the generation requests (POST /v1/completions, /v1/chat/completions) answered
                            500 with an OpenAI-style error, deterministically (0.5: every second one). The fault
                            sits inside the server's own request counter, so /metrics counts these 500s as the
                            analysis of a real bad version would.
AUTOGLM_FAULT_DELAY_SECONDS extra latency of every generation request, inside the server's latency histogram (the
                            request reaches the engine that much later), as a slow version would be.

Health, readiness and /metrics are never touched: a bad version that starts, passes its health check and its smoke
test, and only then shows its faults in its metrics, is what the rollout's analysis is for.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import autoglm_server.app as server_app
from starlette.middleware import Middleware

GENERATION = ("/v1/completions", "/v1/chat/completions")


class FiveHundreds:
    """ASGI middleware, innermost: every request whose running count crosses a multiple of 1/ratio gets a 500."""

    def __init__(self, app, ratio):
        self.app, self.ratio, self.count = app, ratio, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") in GENERATION:
            self.count += 1
            if int(self.count * self.ratio) != int((self.count - 1) * self.ratio):
                body = json.dumps({"error": {"message": "Injected fault (test image): internal error.",
                                             "type": "server_error", "param": None, "code": "internal_error"}}).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def faulty_create_app(create_app):
    ratio = float(os.environ.get("AUTOGLM_FAULT_500_RATIO", "0") or 0)
    delay = float(os.environ.get("AUTOGLM_FAULT_DELAY_SECONDS", "0") or 0)

    def wrapped(settings):
        app = create_app(settings)
        if ratio > 0:
            # Appended after the server's own middleware: inside its request counter (which answers "500" here).
            app.user_middleware.append(Middleware(FiveHundreds, ratio=ratio))
        if delay > 0:
            engine = app.state.engine
            submit = engine.submit

            def late_submit(req):
                # Called on the event loop by the route, after its latency clock started: the request reaches the
                # engine `delay` seconds later, so the histogram (and the client) see the delay.
                asyncio.get_running_loop().call_later(delay, submit, req)

            engine.submit = late_submit
        print("autoglm_fault: 500 ratio %s, delay %s s (TEST IMAGE)" % (ratio, delay), file=sys.stderr, flush=True)
        return app

    return wrapped


def main():
    server_app.create_app = faulty_create_app(server_app.create_app)
    from autoglm_server.__main__ import main as server_main  # imports create_app from the patched module

    return server_main()


if __name__ == "__main__":
    sys.exit(main())
