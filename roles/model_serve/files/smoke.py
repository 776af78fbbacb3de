"""The model_serve role's smoke test: one completion through the server's real OpenAI-compatible API, timed.

Run on the host with the runtime venv's Python (standard library only), by the role's verify.yml:
    python smoke.py BASE_URL PROMPT MAX_TOKENS TIMEOUT
with the API key, if any, in the environment variable AUTOGLM_SMOKE_KEY (never on the command line).
It asks /v1/models for the served model, then /v1/completions for MAX_TOKENS tokens of PROMPT at temperature 0,
and prints {"latency_s", "text", "model", "usage"} as JSON. Any failure exits non-zero with one line that says
what failed against which URL.
"""

import json
import os
import sys
import time
import urllib.request

USAGE = "usage: smoke.py BASE_URL PROMPT MAX_TOKENS TIMEOUT (API key in AUTOGLM_SMOKE_KEY)"


class Client:
    """JSON over HTTP against one base URL, with the bearer key when there is one."""

    def __init__(self, base, timeout, key=None):
        if not base.startswith(("http://", "https://")):
            raise SystemExit("smoke test: %r is not an http(s) URL" % base)
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = "Bearer " + key

    def call(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        # http(s) only (checked above): the role gives its own http://127.0.0.1:<model_serve_port>.
        request = urllib.request.Request(self.base + path, data=data, headers=self.headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            return json.load(response)


def smoke(base, prompt, max_tokens, timeout, key=None):
    """Return the result record; raise SystemExit with a one-line message on any failure."""
    client = Client(base, timeout, key)
    try:
        model = client.call("/v1/models")["data"][0]["id"]
        start = time.monotonic()
        out = client.call(
            "/v1/completions", {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        )
        latency = time.monotonic() - start
    except Exception as exc:  # any failure of the server or the network is the test's answer
        raise SystemExit("smoke test against %s failed: %s" % (base, exc)) from exc
    choices = out.get("choices") if isinstance(out, dict) else None
    if not choices or not isinstance(choices[0], dict) or "text" not in choices[0]:
        raise SystemExit("smoke test against %s: no completion in the answer: %s" % (base, json.dumps(out)[:500]))
    return {"latency_s": round(latency, 3), "text": choices[0]["text"], "model": model, "usage": out.get("usage", {})}


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        raise SystemExit(USAGE)
    base, prompt = args[0], args[1]
    try:
        max_tokens, timeout = int(args[2]), float(args[3])
    except ValueError as exc:
        raise SystemExit("%s: %s" % (USAGE, exc)) from exc
    print(json.dumps(smoke(base, prompt, max_tokens, timeout, os.environ.get("AUTOGLM_SMOKE_KEY"))))


if __name__ == "__main__":
    main()
