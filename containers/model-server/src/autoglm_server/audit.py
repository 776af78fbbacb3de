"""The API audit trail: one JSON line per HTTP request, on stdout (Docker's json-file log rotation keeps it).

A pure ASGI middleware, so it sees every request whatever the route does: the time the request arrived (UTC,
RFC 3339), the client's IP, an id of the API key presented (a short hash, never the key), method, endpoint, model,
status, prompt and completion tokens, the number of images, latency, and whether the response was streamed. The
prompt text is never written unless ``log_prompts`` is on.

Wiring (in ``create_app``)::

    app.add_middleware(AuditMiddleware, log_prompts=settings.audit_log_prompts, max_body=settings.max_request_bytes)

Token counts come from the response's ``usage`` (a JSON body, or a stream's usage chunk). A stream sends usage
only when the client asks (``stream_options.include_usage``), so the route should also report them when the
engine finishes::

    audit.record_usage(prompt_tokens, completion_tokens)

``record_usage`` reaches the current request's record through a context variable: call it anywhere in the
request's handling (a dependency, the route, a streaming generator); outside a request it does nothing.
"""

from __future__ import annotations

import contextvars
import datetime
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

# Health probes and scrapes come every few seconds from Docker and Prometheus: not API calls.
DEFAULT_SKIP_PATHS = ("/health/live", "/health/ready", "/metrics")
# Request bodies are kept (for model, images, prompt) up to this size (the server's max_request_bytes is the one to
# pass); larger ones are audited without them.
MAX_REQUEST_BODY = 32 * 1024 * 1024
# JSON responses are read for their usage up to this size.
MAX_RESPONSE_BODY = 1024 * 1024
# With log_prompts, at most this many characters of prompt text per request.
MAX_PROMPT_CHARS = 8192
IMAGE_PART_TYPES = ("image_url", "image", "input_image")
KEY_ID_CONTEXT = b"autoglm-api-key-id:"

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("autoglm_audit", default=None)


def key_id(credential: str) -> str:
    """A short, stable id of an API key for the log: 16 hex digits of SHA-256 over a fixed prefix and the key.
    It tells which key was used (compare with ``key_id`` of the keys you issued), not the key."""
    return hashlib.sha256(KEY_ID_CONTEXT + credential.encode("utf-8", "replace")).hexdigest()[:16]


def record_usage(prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
    """Set the current request's token counts (the engine's own, which win over the response's usage)."""
    entry = _current.get()
    if entry is None:
        return
    if prompt_tokens is not None:
        entry["prompt_tokens"] = int(prompt_tokens)
    if completion_tokens is not None:
        entry["completion_tokens"] = int(completion_tokens)


def stdout_sink(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditMiddleware:
    """Writes one JSON line per HTTP request through ``sink`` (stdout by default) when its response ends, or when
    it fails or the client goes away (then ``aborted`` is true)."""

    def __init__(
        self,
        app: Any,
        *,
        log_prompts: bool = False,
        sink: Callable[[str], None] = stdout_sink,
        skip_paths: Iterable[str] = DEFAULT_SKIP_PATHS,
        max_body: int = MAX_REQUEST_BODY,
        clock: Callable[[], str] = _now,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.log_prompts = bool(log_prompts)
        self.sink = sink
        self.skip_paths = frozenset(skip_paths)
        self.clock = clock

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "") in self.skip_paths:
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        entry: dict[str, Any] = {
            "event": "api_request",
            "time": self.clock(),
            "client": (scope.get("client") or (None,))[0],
            "key_id": _key_id_of(scope),
            "method": scope.get("method"),
            "endpoint": scope.get("path"),
            "model": None,
            "status": None,
            "prompt_tokens": None,
            "completion_tokens": None,
            "images": 0,
            "latency": None,
            "stream": False,
        }
        request_id = _header(scope, b"x-request-id")
        if request_id:
            entry["request_id"] = request_id[:128]
        token = _current.set(entry)
        body = bytearray()
        body_too_big = False
        response = _ResponseReader()
        finished = False

        async def receive_wrapper() -> dict:
            nonlocal body_too_big
            message = await receive()
            if message["type"] == "http.request" and not body_too_big:
                chunk = message.get("body", b"")
                if len(body) + len(chunk) > self.max_body:
                    body_too_big = True
                    body.clear()
                else:
                    body.extend(chunk)
            return message

        async def send_wrapper(message: dict) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                response.start(message.get("headers") or [])
                entry["stream"] = response.kind == "sse"
            elif message["type"] == "http.response.body":
                response.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    finished = True
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            _current.reset(token)
            if entry["status"] is None:
                entry["status"] = 500
            if not finished:
                entry["aborted"] = True
            entry["latency"] = round(time.monotonic() - started, 4)
            if not body_too_big:
                self._read_request(bytes(body), entry)
            response.fill(entry)
            self.sink(json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str))

    def _read_request(self, body: bytes, entry: dict[str, Any]) -> None:
        if not body:
            return
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(data, dict):
            return
        if isinstance(data.get("model"), str):
            entry["model"] = data["model"][:256]
        messages = data.get("messages")
        if isinstance(messages, list):
            entry["images"] = sum(
                1
                for m in messages
                if isinstance(m, dict) and isinstance(m.get("content"), list)
                for part in m["content"]
                if isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES
            )
        if self.log_prompts:
            text = _prompt_text(data)
            if text is not None:
                entry["prompt"] = text if len(text) <= MAX_PROMPT_CHARS else text[:MAX_PROMPT_CHARS] + "...(cut)"


class _ResponseReader:
    """Reads a response as it passes: the usage of a JSON body or of an event stream, and an error's code."""

    def __init__(self) -> None:
        self.kind = "other"
        self.buffer = bytearray()
        self.usage: dict | None = None
        self.error: str | None = None
        self.too_big = False

    def start(self, headers: list) -> None:
        content_type = ""
        for name, value in headers:
            if name.lower() == b"content-type":
                content_type = value.decode("latin-1").lower()
        if content_type.startswith("application/json"):
            self.kind = "json"
        elif content_type.startswith("text/event-stream"):
            self.kind = "sse"

    def feed(self, chunk: bytes) -> None:
        if self.kind == "json" and not self.too_big:
            if len(self.buffer) + len(chunk) > MAX_RESPONSE_BODY:
                self.too_big = True
                self.buffer.clear()
            else:
                self.buffer.extend(chunk)
        elif self.kind == "sse":
            self.buffer.extend(chunk)
            *lines, rest = self.buffer.split(b"\n")
            self.buffer = bytearray(rest[-MAX_RESPONSE_BODY:])
            for line in lines:
                if line.startswith(b"data: {") and (b'"usage"' in line or b'"error"' in line):
                    self._event(line[6:])

    def _event(self, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return
        if isinstance(data, dict):
            self._take(data)

    def _take(self, data: dict) -> None:
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        error = data.get("error")
        if isinstance(error, dict):
            self.error = str(error.get("code") or error.get("type") or "error")[:128]

    def fill(self, entry: dict[str, Any]) -> None:
        if self.kind == "json" and not self.too_big and self.buffer:
            try:
                data = json.loads(bytes(self.buffer))
            except (ValueError, UnicodeDecodeError):
                data = None
            if isinstance(data, dict):
                self._take(data)
        if self.usage:
            for name in ("prompt_tokens", "completion_tokens"):
                if entry[name] is None and isinstance(self.usage.get(name), int):
                    entry[name] = self.usage[name]
        if self.error:
            entry["error"] = self.error


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _key_id_of(scope: dict) -> str | None:
    """The id of the credential in the Authorization header (a Bearer token, or the whole value otherwise)."""
    value = _header(scope, b"authorization")
    if not value:
        return None
    scheme, _sep, credential = value.strip().partition(" ")
    return key_id(credential.strip() if scheme.lower() == "bearer" and credential.strip() else value.strip())


def _prompt_text(data: dict) -> str | None:
    """The prompt as text: a completion's prompt (token ids counted, not listed), or the chat messages' text with
    each image as [image]."""
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return "\n".join(prompt)
        return "<%d token ids>" % len(prompt)
    messages = data.get("messages")
    if not isinstance(messages, list):
        return None
    out = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(_part_text(p) for p in content if isinstance(p, dict))
        out.append("%s: %s" % (m.get("role", "?"), content if isinstance(content, str) else ""))
    return "\n".join(out)


def _part_text(part: dict) -> str:
    if part.get("type") == "text":
        return str(part.get("text", ""))
    return "[image]" if part.get("type") in IMAGE_PART_TYPES else ""
