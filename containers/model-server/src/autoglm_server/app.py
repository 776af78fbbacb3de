"""The FastAPI application: OpenAI-compatible routes, health, metrics and OpenAI-style errors."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, audit
from .config import Settings
from .engine import Engine, EngineUnavailable, GenRequest, InputError, Prepared, QueueFull
from .metrics import Metrics
from .protocol import (
    IGNORED_FIELDS,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
)

log = logging.getLogger("autoglm_server.api")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid body or parameters."},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (when one is configured)."},
    404: {"model": ErrorResponse, "description": "Unknown model."},
    413: {"model": ErrorResponse, "description": "The request body is larger than max_request_bytes."},
    429: {"model": ErrorResponse, "description": "The waiting queue is full; retry after Retry-After seconds."},
    503: {"model": ErrorResponse, "description": "Not ready (loading or warming up) or draining."},
    504: {"model": ErrorResponse, "description": "No answer within request_timeout seconds."},
}
# Fields that change what is generated and that this server does not implement: refused by name (400).
UNSUPPORTED_FIELDS = {
    "logit_bias": "logit_bias is not supported",
    "top_logprobs": "top_logprobs is not supported",
    "response_format": "response_format (JSON mode, structured outputs) is not supported",
    "tools": "tools (function calling) are not supported",
    "tool_choice": "tool_choice is not supported",
    "functions": "functions (function calling) are not supported",
    "function_call": "function_call is not supported",
    "best_of": "best_of is not supported",
    "suffix": "suffix is not supported",
}
GENERATION_ENDPOINTS = ("/v1/completions", "/v1/chat/completions")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers


def error_response(exc: APIError) -> JSONResponse:
    body = {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


class BodyLimitMiddleware:
    """Answers 413 before reading more than ``limit`` bytes of a request body (by Content-Length, or by counting
    a chunked body as it arrives)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    def _too_large(self) -> JSONResponse:
        return error_response(
            APIError(
                413,
                f"The request body is larger than this server accepts ({self.limit} bytes, setting "
                "max_request_bytes). Send fewer or smaller images.",
                param=None,
                code="request_too_large",
            )
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._too_large()(scope, receive, send)
                    return
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                break
        else:
            await self.app(scope, receive, send)  # a declared length within the limit
            return
        # A chunked body: read it here, counting, and answer 413 as soon as it passes the limit.
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestMetricsMiddleware:
    """Counts every HTTP response by endpoint (route template, or "other") and status code.

    A response is counted before its last body chunk is sent, so a client that reads /metrics after a response
    always finds it counted; one that fails or is cut off before that is counted when it ends."""

    def __init__(self, app: Any, metrics: Metrics, endpoints: set[str]) -> None:
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"
        status = {"code": 500}
        counted = False

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                self.metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                count()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            count()


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()
    engine = Engine(settings, metrics)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.start_drain()
            await asyncio.to_thread(engine.stop)

    app = FastAPI(
        title="autoglm model server",
        version=__version__,
        description="OpenAI-compatible text and vision-language generation with continuous batching.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = engine
    app.state.active = 0
    bearer = HTTPBearer(auto_error=False, description="Required when the server has an API key configured.")

    # ------------------------------------------------------------------ errors
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        metrics.errors.labels(kind=exc.code or exc.type).inc()
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc)
        message = first.get("msg", "Invalid request body.")
        text = f"Invalid request: {where}: {message}" if where else f"Invalid request: {message}"
        if len(errors) > 1:
            text += f" (and {len(errors) - 1} more problem(s))"
        return await _api_error(request, APIError(400, text, param=where or None, code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return await _api_error(request, APIError(exc.status_code, str(exc.detail), code=code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return await _api_error(request, APIError(500, "Internal server error.", "server_error", code="internal_error"))

    # ------------------------------------------------------------------ helpers
    async def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if not settings.api_key:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise APIError(
                401,
                "Missing or invalid API key: send 'Authorization: Bearer <key>'.",
                "authentication_error",
                code="invalid_api_key",
            )

    def check_model(name: str) -> None:
        if name != settings.model_name:
            raise APIError(
                404,
                f"The model {name!r} does not exist; this server serves {settings.model_name!r} (see GET /v1/models).",
                param="model",
                code="model_not_found",
            )

    def require_ready() -> None:
        if not engine.ready:
            state = "draining" if engine.state in ("draining", "stopped") else engine.state
            raise APIError(
                503,
                f"The server is not accepting requests ({state}); retry on another replica or later.",
                "service_unavailable",
                code="not_ready",
                headers={"Retry-After": str(settings.retry_after)},
            )

    def stop_list(stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > settings.max_stop_sequences:
            raise APIError(
                400,
                f"stop: at most {settings.max_stop_sequences} sequences are allowed (setting max_stop_sequences).",
                param="stop",
            )
        if any(s == "" for s in stops):
            raise APIError(400, "stop: stop sequences must not be empty strings.", param="stop")
        if any(len(s) > settings.max_stop_length for s in stops):
            raise APIError(
                400,
                f"stop: each stop sequence may have at most {settings.max_stop_length} characters "
                "(setting max_stop_length).",
                param="stop",
            )
        return stops

    def engine_error(event: tuple) -> APIError:
        status = event[2] if len(event) > 2 else 500
        if status == 504:
            return APIError(504, event[1], "timeout_error", code="timeout")
        if status < 500:
            return APIError(status, event[1], code="invalid_input")
        return APIError(status, event[1], "server_error", code="engine_error")

    def refuse_unsupported(body: Any) -> None:
        """400 for a field that would change the output and that this server does not implement."""
        for name in sorted(body.model_extra or {}):
            if name in IGNORED_FIELDS:
                continue
            reason = UNSUPPORTED_FIELDS.get(name, f"{name} is not a field this server knows")
            raise APIError(
                400, f"{reason}: remove {name!r} from the request (it would change the output).", param=name
            )

    async def prepare(fn: Any, *args: Any, images: bool = False) -> Prepared:
        """Tokenize / render / decode and encode images on the preprocessing threads, never on the event loop; a
        request with images uses its own pool, so text requests never wait behind a vision encoder."""
        pool = engine.image_pool if images else engine.pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except InputError as exc:
            raise APIError(exc.status, str(exc), param=exc.param, code="invalid_input") from None

    def check_context(prep: Prepared, max_tokens: int | None, param: str) -> int:
        limit = engine.max_model_len
        prompt_len = len(prep.prompt_ids)
        images = (
            f", {prep.image_tokens} of them for {prep.images} image{'s' if prep.images != 1 else ''}"
            if prep.images
            else ""
        )
        if prompt_len < 1:
            raise APIError(400, "The prompt is empty: send at least one token of text.", param="prompt")
        if max_tokens is None:
            max_tokens = limit - prompt_len
            if max_tokens < 1:
                raise APIError(
                    400,
                    f"This model's maximum context length is {limit} tokens and the prompt has {prompt_len}{images}; "
                    "shorten the prompt" + (" or send fewer or smaller images." if images else "."),
                    param="messages",
                    code="context_length_exceeded",
                )
        if prompt_len + max_tokens > limit:
            raise APIError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_len + max_tokens} tokens ({prompt_len} in the prompt{images}, {max_tokens} in the "
                f"completion). Reduce the prompt{', the images' if images else ''} or {param}.",
                param=param,
                code="context_length_exceeded",
            )
        return max_tokens

    async def run(
        request_body: Any,
        prep: Prepared,
        max_tokens: int,
        endpoint: str,
        render: Any,
    ) -> Response:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple] = asyncio.Queue()
        deadline = loop.time() + settings.request_timeout

        def on_event(event: tuple) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        async def next_event() -> tuple:
            try:
                return await asyncio.wait_for(queue.get(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                req.cancel()
                metrics.errors.labels(kind="timeout").inc()
                return ("error", f"No answer within {settings.request_timeout:g} s (setting request_timeout).", 504)

        req = GenRequest(
            prompt_ids=prep.prompt_ids,
            mm_inputs=prep.mm_inputs,
            images=prep.images,
            max_tokens=max_tokens,
            on_event=on_event,
            temperature=request_body.temperature,
            top_p=request_body.top_p,
            top_k=request_body.top_k,
            frequency_penalty=request_body.frequency_penalty,
            presence_penalty=request_body.presence_penalty,
            repetition_penalty=request_body.repetition_penalty,
            seed=request_body.seed,
            stop=stop_list(request_body.stop),
            ignore_eos=request_body.ignore_eos,
        )
        started = time.monotonic()
        try:
            engine.submit(req)
        except QueueFull:
            raise APIError(
                429,
                f"The server is at capacity ({settings.max_waiting} requests waiting); retry after "
                f"{settings.retry_after} s.",
                "rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(settings.retry_after)},
            ) from None
        except EngineUnavailable:
            require_ready()
            raise
        app.state.active += 1

        def done() -> None:
            app.state.active -= 1
            req.cancel()
            metrics.latency.labels(endpoint=endpoint).observe(time.monotonic() - started)

        if not request_body.stream:
            try:
                parts = []
                while True:
                    event = await next_event()
                    if event[0] == "delta":
                        parts.append(event[1])
                    elif event[0] == "finish":
                        reason, prompt_tokens, completion_tokens = event[1:]
                        audit.record_usage(prompt_tokens, completion_tokens)
                        usage = usage_dict(prompt_tokens, completion_tokens)
                        return JSONResponse(render.full("".join(parts), reason, usage))
                    else:
                        raise engine_error(event)
            finally:
                done()

        include_usage = bool(request_body.stream_options and request_body.stream_options.include_usage)

        async def events() -> AsyncIterator[str]:
            try:
                first = render.first_chunk()
                if first is not None:
                    yield sse(first)
                while True:
                    event = await next_event()
                    if event[0] == "delta":
                        yield sse(render.chunk(event[1], None))
                    elif event[0] == "finish":
                        reason, prompt_tokens, completion_tokens = event[1:]
                        audit.record_usage(prompt_tokens, completion_tokens)
                        yield sse(render.chunk("", reason))
                        if include_usage:
                            yield sse(render.usage_chunk(usage_dict(prompt_tokens, completion_tokens)))
                        break
                    else:
                        exc = engine_error(event)
                        metrics.errors.labels(kind=exc.code or "engine_error").inc()
                        error = {"message": exc.message, "type": exc.type, "param": None, "code": exc.code}
                        yield sse({"error": error})
                        break
                yield "data: [DONE]\n\n"
            finally:
                done()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------------ routes
    @app.get("/health/live", response_model=Health, responses={503: {"model": Health}}, tags=["health"])
    async def live() -> JSONResponse:
        ok = engine.live
        return JSONResponse({"status": "ok" if ok else "dead", "state": engine.state}, status_code=200 if ok else 503)

    @app.get("/health/ready", response_model=Health, responses={503: {"model": Health}}, tags=["health"])
    async def ready() -> JSONResponse:
        ok = engine.ready
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "state": engine.state}, status_code=200 if ok else 503
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES, dependencies=[Depends(authorize)])
    async def models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @app.get(
        "/v1/models/{model}", response_model=ModelCard, responses=ERROR_RESPONSES, dependencies=[Depends(authorize)]
    )
    async def model_detail(model: str) -> dict:
        check_model(model)
        return model_card()

    def model_card() -> dict:
        return {
            "id": settings.model_name,
            "object": "model",
            "created": created,
            "owned_by": "autoglm",
            "max_model_len": engine.max_model_len or None,
        }

    @app.post(
        "/v1/completions",
        response_model=CompletionResponse,
        responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
        dependencies=[Depends(authorize)],
    )
    async def completions(body: CompletionRequest) -> Response:
        check_model(body.model)
        require_ready()
        refuse_unsupported(body)
        if body.echo:
            raise APIError(400, "echo is not supported: leave it unset or false.", param="echo")
        if body.logprobs:
            raise APIError(400, "logprobs is not supported: leave it unset.", param="logprobs")
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise APIError(400, "prompt: send one prompt per request (a string or a list of one).", param="prompt")
            prompt = prompt[0]
        if isinstance(prompt, str):
            check_chars(len(prompt), "prompt")
            prep = await prepare(engine.prepare_text, prompt)
        else:
            vocab = len(engine.tokenizer)
            if len(prompt) > engine.max_model_len:
                raise APIError(
                    400,
                    f"prompt: {len(prompt)} token ids; this model's maximum context length is {engine.max_model_len}.",
                    param="prompt",
                    code="context_length_exceeded",
                )
            if any(not 0 <= t < vocab for t in prompt):
                raise APIError(400, f"prompt: token ids must be between 0 and {vocab - 1}.", param="prompt")
            prep = Prepared(list(prompt))
        max_tokens = check_context(prep, body.max_tokens or settings.default_max_tokens, "max_tokens")
        return await run(body, prep, max_tokens, "/v1/completions", Renderer("cmpl", settings.model_name, chat=False))

    def check_chars(count: int, param: str) -> None:
        if count > settings.max_prompt_chars:
            raise APIError(
                400,
                f"{param}: {count} characters; this server accepts at most {settings.max_prompt_chars} "
                "characters of text per request (setting max_prompt_chars).",
                param=param,
                code="context_length_exceeded",
            )

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionResponse,
        responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
        dependencies=[Depends(authorize)],
    )
    async def chat_completions(body: ChatCompletionRequest) -> Response:
        check_model(body.model)
        require_ready()
        refuse_unsupported(body)
        if body.logprobs:
            raise APIError(400, "logprobs is not supported: leave it unset or false.", param="logprobs")
        if len(body.messages) > settings.max_messages:
            raise APIError(
                400,
                f"messages: {len(body.messages)} messages; this server accepts at most {settings.max_messages} "
                "(setting max_messages).",
                param="messages",
            )
        check_chars(sum(text_chars(m.content) for m in body.messages), "messages")
        has_images = any(
            not isinstance(m.content, str) and any(p.type == "image_url" for p in m.content) for m in body.messages
        )
        prep = await prepare(engine.prepare_chat, body.messages, images=has_images)
        limit = body.max_completion_tokens or body.max_tokens
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        max_tokens = check_context(prep, limit, param)
        return await run(
            body, prep, max_tokens, "/v1/chat/completions", Renderer("chatcmpl", settings.model_name, chat=True)
        )

    endpoints = {route.path for route in app.routes if hasattr(route, "path")}
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, endpoints=endpoints)
    if settings.audit_log:  # outermost: it records every answer, 413s included
        app.add_middleware(
            audit.AuditMiddleware, log_prompts=settings.audit_log_prompts, max_body=settings.max_request_bytes
        )

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        # Invalid bodies answer 400 (OpenAI's convention), not FastAPI's 422.
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        # The only model this server accepts: clients (and schemathesis) can read it from the document.
        for component in schema.get("components", {}).get("schemas", {}).values():
            model_field = component.get("properties", {}).get("model")
            if model_field is not None and model_field.get("type") == "string":
                model_field["enum"] = [settings.model_name]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    return sum(len(part.text) for part in content if part.type == "text")


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class Renderer:
    """Shapes engine output as OpenAI completion or chat completion bodies and stream chunks."""

    def __init__(self, prefix: str, model: str, chat: bool) -> None:
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.model, self.chat, self.created = model, chat, int(time.time())

    def _base(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def full(self, text: str, reason: str, usage: dict) -> dict:
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
            return {**self._base("chat.completion"), "choices": [choice], "usage": usage}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return {**self._base("text_completion"), "choices": [choice], "usage": usage}

    def first_chunk(self) -> dict | None:
        if not self.chat:
            return None
        delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return {**self._base("chat.completion.chunk"), "choices": [choice]}

    def chunk(self, text: str, reason: str | None) -> dict:
        if self.chat:
            delta = {"content": text} if text or reason is None else {}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {**self._base("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return {**self._base("text_completion"), "choices": [choice]}

    def usage_chunk(self, usage: dict) -> dict:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._base(obj), "choices": [], "usage": usage}
