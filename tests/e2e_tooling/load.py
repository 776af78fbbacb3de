"""A client that sends continuous requests through every host's front and counts what came back.

Per host, two workers send one request after the other: one non-streamed /v1/completions, one streamed
/v1/chat/completions (its events are read to the end and must finish with ``data: [DONE]``). Every request opens its
own connection (see below), carries the lab's API key, and is recorded with its host, kind, start and end time,
HTTP status, the front's X-AutoGLM-Colour header and any error. A request failed when it got no answer, an answer
other than 200, or a stream that did not finish.

One connection per request: when nginx reloads, its old workers close their idle keep-alive connections, and a
client that writes a new request on such a connection at that instant gets a reset (HTTP/1.1's keep-alive race,
which the openai client retries). This client does not retry anything, so it does not reuse connections either:
every failure it counts is a failure of the fleet.

Paced: a worker starts a request at most every PACE seconds (0.25: about 16 requests a second on two hosts, so every
front reload and colour swap still happens under traffic). Unpaced, the four workers sent about 50 requests a second
and the model servers answering them took most of the test machine's two cores from the rollouts being measured.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass


@dataclass
class Result:
    host: str
    kind: str
    start: float
    end: float
    status: int | None
    colour: str
    error: str | None

    @property
    def failed(self):
        return self.error is not None or self.status != 200


class Load:
    """Use as a context manager: requests run from __enter__ to __exit__."""

    def __init__(self, targets, key, model="tiny", max_tokens=4, timeout=120.0, pace=0.25):
        self.targets = dict(targets)  # host -> (address, port)
        self.key, self.model, self.max_tokens, self.timeout = key, model, max_tokens, timeout
        self.pace = pace  # seconds from one request's start to the next one's, per worker, at least
        self.results = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []

    def __enter__(self):
        for host in self.targets:
            for kind in ("completion", "stream"):
                thread = threading.Thread(target=self._worker, args=(host, kind), daemon=True)
                thread.start()
                self.threads.append(thread)
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(self.timeout + 10)

    def _request(self, host, kind):
        address, port = self.targets[host]
        if kind == "completion":
            path = "/v1/completions"
            body = {"model": self.model, "prompt": "Hello", "max_tokens": self.max_tokens, "temperature": 0}
        else:
            path = "/v1/chat/completions"
            body = {"model": self.model, "stream": True, "max_tokens": self.max_tokens,
                    "messages": [{"role": "user", "content": "Hello"}]}
        start = time.monotonic()
        status, colour, error = None, "", None
        conn = http.client.HTTPConnection(address, port, timeout=self.timeout)
        try:
            conn.request("POST", path, body=json.dumps(body),
                         headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.key})
            response = conn.getresponse()
            status, colour = response.status, response.getheader("X-AutoGLM-Colour") or ""
            payload = response.read()
            if status == 200 and kind == "stream" and not payload.rstrip().endswith(b"data: [DONE]"):
                error = "stream ended without [DONE]"
            elif status == 200 and kind == "completion" and not json.loads(payload).get("choices"):
                error = "no choices"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error = "%s: %s" % (type(exc).__name__, exc)
        finally:
            conn.close()
        return Result(host, kind, start, time.monotonic(), status, colour, error)

    def _worker(self, host, kind):
        while not self.stopping.is_set():
            result = self._request(host, kind)
            with self.lock:
                self.results.append(result)
            self.stopping.wait(max(0.0, self.pace - (result.end - result.start)))

    # ------------------------------------------------------------------ what came back
    def counts(self):
        """Per host: requests, failed, statuses, colours, errors (first 5 distinct)."""
        out = {}
        for host in self.targets:
            mine = [r for r in self.results if r.host == host]
            out[host] = {
                "requests": len(mine),
                "failed": sum(r.failed for r in mine),
                "streams": sum(r.kind == "stream" for r in mine),
                "statuses": dict(Counter(str(r.status) for r in mine)),
                "colours": dict(Counter(r.colour or "-" for r in mine)),
                "errors": sorted({r.error for r in mine if r.error})[:5],
            }
        return out

    def failures(self, host=None):
        return [r for r in self.results if r.failed and (host is None or r.host == host)]
