"""The model_serve role's synthetic probe load: steady requests through the front while a new colour is analysed.

Run on the host with the runtime venv's Python (standard library only), as an async job, by the role's analysis.yml:
    python probe_load.py FRONT_URL SECONDS CONCURRENCY MAX_TOKENS
with the API key, if any, in the environment variable AUTOGLM_PROBE_KEY (never on the command line), and optionally
AUTOGLM_PROBE_STOP_FILE: a path whose existence ends the load before SECONDS (tests run it across a whole rollout).
CONCURRENCY clients send requests one after the other for SECONDS seconds, alternating a /v1/completions request and
a streamed /v1/chat/completions request of MAX_TOKENS tokens, each on its own connection. The front spreads them
over the colours by weight, so the new colour gets its share; serve_analysis judges it from the colour's own metrics.
It prints what it saw as one JSON object: requests, ok, failed, statuses, errors (exception names), colours (the
front's X-AutoGLM-Colour header), retry_after (Retry-After values seen), seconds. A probe load is traffic, not a
judge: it exits 0 whatever the answers.
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

USAGE = "usage: probe_load.py FRONT_URL SECONDS CONCURRENCY MAX_TOKENS (API key in AUTOGLM_PROBE_KEY)"


class Probe:
    """CONCURRENCY clients against one base URL until a deadline; thread-safe counters."""

    def __init__(self, base, seconds, concurrency, max_tokens, key=None, timeout=120.0, stop_file=None):
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SystemExit("probe load: %r is not an http(s) URL" % base)
        self.parts = parts
        self.seconds = seconds
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.stop_file = stop_file
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = "Bearer " + key
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "ok": 0, "failed": 0, "statuses": {}, "errors": {}, "colours": {},
                       "retry_after": {}}
        self.model = None

    def _connection(self):
        cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        return cls(self.parts.hostname, self.parts.port, timeout=self.timeout)

    def request(self, method, path, body=None):
        """One request on its own connection: (status, headers, body bytes); raises on network errors."""
        conn = self._connection()
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, self.parts.path.rstrip("/") + path, body=data, headers=self.headers)
            response = conn.getresponse()
            payload = response.read()
            return response.status, response, payload
        finally:
            conn.close()

    def find_model(self, deadline):
        while self.going(deadline):
            try:
                status, _headers, payload = self.request("GET", "/v1/models")
                if status == 200:
                    return json.loads(payload)["data"][0]["id"]
            except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException):
                pass
            time.sleep(0.5)
        return None

    def record(self, status, colour, error, retry_after=None):
        with self.lock:
            c = self.counts
            c["requests"] += 1
            good = error is None and status == 200
            c["ok" if good else "failed"] += 1
            if status is not None:
                c["statuses"][str(status)] = c["statuses"].get(str(status), 0) + 1
            if error is not None:
                c["errors"][error] = c["errors"].get(error, 0) + 1
            if colour:
                c["colours"][colour] = c["colours"].get(colour, 0) + 1
            if retry_after is not None:
                c["retry_after"][retry_after] = c["retry_after"].get(retry_after, 0) + 1

    def one(self, n):
        if n % 2 == 0:
            path = "/v1/completions"
            body = {"model": self.model, "prompt": "Hello", "max_tokens": self.max_tokens, "temperature": 0}
        else:
            path = "/v1/chat/completions"
            body = {"model": self.model, "messages": [{"role": "user", "content": "Hello"}],
                    "max_tokens": self.max_tokens, "temperature": 0, "stream": True}
        status = colour = error = retry_after = None
        try:
            status, response, payload = self.request("POST", path, body)
            colour = response.getheader("X-AutoGLM-Colour") or ""
            retry_after = response.getheader("Retry-After")
            if status == 200 and body.get("stream") and b"data: [DONE]" not in payload:
                error = "StreamIncomplete"
        except (OSError, http.client.HTTPException) as exc:
            error = type(exc).__name__
        self.record(status, colour, error, retry_after)

    def going(self, deadline):
        return time.monotonic() < deadline and not (self.stop_file and os.path.exists(self.stop_file))

    def worker(self, deadline, offset):
        n = offset
        while self.going(deadline):
            self.one(n)
            n += 1

    def run(self):
        start = time.monotonic()
        deadline = start + self.seconds
        self.model = self.find_model(deadline)
        if self.model is not None:
            threads = [threading.Thread(target=self.worker, args=(deadline, i), daemon=True)
                       for i in range(self.concurrency)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        result = dict(self.counts, seconds=round(time.monotonic() - start, 1), model=self.model)
        return result


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        raise SystemExit(USAGE)
    try:
        seconds, concurrency, max_tokens = float(args[1]), int(args[2]), int(args[3])
    except ValueError as exc:
        raise SystemExit("%s: %s" % (USAGE, exc)) from exc
    if seconds <= 0 or concurrency < 1 or max_tokens < 1:
        raise SystemExit("%s: SECONDS must be positive, CONCURRENCY and MAX_TOKENS 1 or more" % USAGE)
    probe = Probe(args[0], seconds, concurrency, max_tokens, os.environ.get("AUTOGLM_PROBE_KEY"),
                  stop_file=os.environ.get("AUTOGLM_PROBE_STOP_FILE"))
    print(json.dumps(probe.run(), sort_keys=True))


if __name__ == "__main__":
    main()
