"""The generation engine: one thread that owns the model and runs a continuous batch.

Requests wait in a bounded queue. At every step boundary the engine admits waiting requests (up to
``max_batch_size``), runs each one's prompt alone (prefill), then merges its KV cache into the running
batch (left-padded, with an attention mask). One forward pass then decodes one token for every running
sequence; finished or cancelled sequences leave the batch right after the step that finished them.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .config import Settings
from .metrics import Metrics

log = logging.getLogger("autoglm_server.engine")
# Temperatures below this are greedy: dividing logits by a tiny temperature overflows to inf/NaN.
GREEDY_BELOW = 1e-3


class EngineUnavailable(Exception):
    """The engine does not admit requests now (loading, draining, stopped or failed): HTTP 503."""


class QueueFull(Exception):
    """The waiting queue is full: HTTP 429."""


@dataclass(eq=False)
class GenRequest:
    prompt_ids: list[int]
    max_tokens: int
    on_event: Callable[[tuple], None]
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    # engine state
    output_ids: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    cache_len: int = 0
    finish_reason: str | None = None
    arrival: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    cancelled: bool = False
    generator: torch.Generator | None = None

    def cancel(self) -> None:
        self.cancelled = True


@functools.cache
def _growable_layer_class() -> Any:
    """A DynamicLayer whose keys/values live in a buffer with spare columns: appending a decode step writes
    in place instead of copying the whole cache (DynamicLayer concatenates on every step)."""
    from transformers.cache_utils import DynamicLayer

    class GrowableLayer(DynamicLayer):
        def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            super().__init__()
            self.dtype, self.device = keys.dtype, keys.device
            self.is_initialized = True
            self._store(keys, values, spare=32)

        def _store(self, keys: torch.Tensor, values: torch.Tensor, spare: int) -> None:
            b, h, n = keys.shape[:3]
            self._kbuf = keys.new_empty((b, h, n + spare, keys.shape[-1]))
            self._vbuf = values.new_empty((b, values.shape[1], n + spare, values.shape[-1]))
            self._kbuf[:, :, :n] = keys
            self._vbuf[:, :, :n] = values
            self._n = n
            self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            add = key_states.shape[-2]
            if self._n + add > self._kbuf.shape[-2]:
                self._store(self.keys, self.values, spare=max(64, self._n))
            self._kbuf[:, :, self._n : self._n + add] = key_states
            self._vbuf[:, :, self._n : self._n + add] = value_states
            self._n += add
            self.keys, self.values = self._kbuf[:, :, : self._n], self._vbuf[:, :, : self._n]
            return self.keys, self.values

    return GrowableLayer


class Engine:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = "starting"  # starting, loading, warming, ready, draining, stopped, failed
        self.fatal: str | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = torch.device("cpu")
        self.max_model_len = 0
        self.eos_ids: set[int] = set()
        self._cond = threading.Condition()
        self._waiting: collections.deque[GenRequest] = collections.deque()
        self._running: list[GenRequest] = []
        self._cache: Any = None  # the running batch's DynamicCache: [batch, heads, columns, head_dim] per layer
        self._mask: torch.Tensor | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="autoglm-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.state != "failed":
            self.state = "stopped"
        self.metrics.ready.set(0)

    def start_drain(self) -> None:
        if self.state in ("ready", "starting", "loading", "warming"):
            self.state = "draining"
        self.metrics.ready.set(0)

    @property
    def live(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.fatal is None

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.live

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._waiting and not self._running

    def submit(self, req: GenRequest) -> None:
        with self._cond:
            if not self.ready:
                raise EngineUnavailable(self.state if self.fatal is None else "failed")
            if len(self._waiting) >= self.settings.max_waiting:
                raise QueueFull()
            self._enqueue(req)

    def _enqueue(self, req: GenRequest) -> None:
        if req.temperature >= GREEDY_BELOW:
            req.generator = torch.Generator(device="cpu")
            if req.seed is None:
                req.generator.seed()
            else:
                req.generator.manual_seed(req.seed)
        self._waiting.append(req)
        self.metrics.waiting.set(len(self._waiting))
        self._cond.notify_all()

    # ----------------------------------------------------------------- thread
    def _main(self) -> None:
        try:
            with torch.inference_mode():
                self.state = "loading"
                self._load()
                self.state = "warming"
                if self.settings.warmup:
                    self._warmup()
                with self._cond:
                    if self.state == "warming":
                        self.state = "ready"
                        self.metrics.ready.set(1)
                log.info("engine ready: model %s on %s", self.settings.model_name, self.device)
                self._loop()
        except Exception as exc:
            log.exception("engine failed")
            self.fatal = f"{type(exc).__name__}: {exc}"
            self.state = "failed"
            self.metrics.ready.set(0)
            self._fail_all(f"The generation engine failed: {self.fatal}")

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                if not self._waiting and not self._running:
                    self._cond.wait(0.5)
                    self.heartbeat = time.monotonic()
                    continue
            try:
                self.step()
            except Exception as exc:  # a failed step fails its requests, the loop goes on
                log.exception("generation step failed")
                self.metrics.errors.labels(kind="engine").inc()
                self._fail_all(f"Generation failed: {type(exc).__name__}: {exc}")
            self.heartbeat = time.monotonic()

    def _fail_all(self, message: str) -> None:
        with self._cond:
            victims = list(self._running) + list(self._waiting)
            self._running.clear()
            self._waiting.clear()
            self._cache, self._mask = None, None
            self.metrics.running.set(0)
            self.metrics.waiting.set(0)
        for req in victims:
            req.finish_reason = "error"
            self._emit(req, ("error", message))

    # ----------------------------------------------------------------- loading
    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        s = self.settings
        t0 = time.monotonic()
        if s.threads:
            torch.set_num_threads(s.threads)
        if s.device == "cuda" or (s.device == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise RuntimeError("device=cuda but torch sees no CUDA device; set AUTOGLM_DEVICE=cpu or fix the GPU")
            self.device = torch.device("cuda")
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(s.dtype)
        if dtype is None:  # auto
            if self.device.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                dtype = torch.float32
        model_dir = Path(s.model_dir)
        has_safetensors = any(model_dir.glob("*.safetensors"))
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir),
            local_files_only=True,
            dtype=dtype,
            use_safetensors=True if has_safetensors else None,
            trust_remote_code=False,
        )
        model.to(self.device)
        model.eval()
        if s.quantization == "int8":
            if self.device.type != "cpu":
                raise RuntimeError("quantization=int8 works on CPU only; set AUTOGLM_QUANTIZATION=none")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model
        limit = int(getattr(model.config, "max_position_embeddings", 0) or 0) or 2048
        self.max_model_len = min(s.max_model_len, limit) if s.max_model_len else limit
        eos: Any = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self.metrics.model_load.set(time.monotonic() - t0)
        if self.device.type == "cuda":
            self.metrics.gpu_memory.set_function(lambda: torch.cuda.memory_allocated(self.device))
            self.metrics.gpu_memory_reserved.set_function(lambda: torch.cuda.memory_reserved(self.device))

    def _warmup(self) -> None:
        ids = self.tokenizer.encode("Hello", add_special_tokens=True) or [0]
        req = GenRequest(prompt_ids=ids, max_tokens=4, temperature=0.0, ignore_eos=True, on_event=lambda ev: None)
        with self._cond:
            self._enqueue(req)
        while req.finish_reason is None:
            self.step()

    # ----------------------------------------------------------------- one step
    def step(self) -> None:
        """Admit waiting requests (prefill each, join the batch), then decode one token for the batch."""
        admitted = []
        with self._cond:
            while self._waiting and len(self._running) + len(admitted) < self.settings.max_batch_size:
                req = self._waiting.popleft()
                if req.cancelled:
                    continue
                admitted.append(req)
            self.metrics.waiting.set(len(self._waiting))
        joining = []
        for req in admitted:
            cache = self._prefill(req)
            if req.finish_reason is None:
                joining.append((req, cache))
        if joining:
            self._join(joining)
        if self._running:
            self._decode()
        self._retire()

    def _prefill(self, req: GenRequest) -> Any:
        """Run the prompt alone; sample the first token; return the prompt's KV cache."""
        from transformers import DynamicCache

        ids = torch.tensor([req.prompt_ids], dtype=torch.long, device=self.device)
        cache = DynamicCache()
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        self.metrics.prompt_tokens.inc(len(req.prompt_ids))
        req.cache_len = len(req.prompt_ids)
        token = self._sample(out.logits[:, -1, :], [req])[0]
        self._append(req, token)
        return cache

    def _join(self, joining: list[tuple[GenRequest, Any]]) -> None:
        """Merge prefilled sequences into the running batch: one left-padded concatenation per layer."""
        from transformers import DynamicCache

        layer_class = _growable_layer_class()
        with self._cond:
            parts = []  # (per-layer keys, per-layer values, mask) of the batch, then of each newcomer
            if self._running:
                assert self._mask is not None
                layers = self._cache.layers
                parts.append(([x.keys for x in layers], [x.values for x in layers], self._mask))
            for req, cache in joining:
                mask = torch.ones((1, req.cache_len), dtype=torch.long, device=self.device)
                parts.append(([x.keys for x in cache.layers], [x.values for x in cache.layers], mask))
            width = max(part[2].shape[1] for part in parts)

            def pad(t: torch.Tensor, dim_from_end: int) -> torch.Tensor:
                missing = width - t.shape[-dim_from_end]
                return t if missing == 0 else F.pad(t, [0, 0] * (dim_from_end - 1) + [missing, 0])

            layers = []
            for i in range(len(parts[0][0])):
                keys = torch.cat([pad(part[0][i], 2) for part in parts])
                values = torch.cat([pad(part[1][i], 2) for part in parts])
                layers.append(layer_class(keys, values))
            merged = DynamicCache()
            merged.layers = layers
            self._cache = merged
            self._mask = torch.cat([pad(part[2], 1) for part in parts])
            self._running.extend(req for req, _cache in joining)
            self.metrics.running.set(len(self._running))

    def _decode(self) -> None:
        running = list(self._running)
        assert self._mask is not None
        batch = len(running)
        ids = torch.tensor([[r.output_ids[-1]] for r in running], dtype=torch.long, device=self.device)
        positions = torch.tensor([[r.cache_len] for r in running], dtype=torch.long, device=self.device)
        mask = torch.cat([self._mask, torch.ones((batch, 1), dtype=torch.long, device=self.device)], dim=1)
        padded = not bool(mask.all())
        out = self.model(
            input_ids=ids,
            attention_mask=mask if padded else None,  # no padding: the plain causal path (faster)
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.metrics.batch_size.observe(batch)
        tokens = self._sample(out.logits[:, -1, :], running)
        with self._cond:
            self._mask = mask
        for req, token in zip(running, tokens, strict=True):
            req.cache_len += 1
            self._append(req, token)

    def _retire(self) -> None:
        """Drop finished and cancelled sequences from the batch; trim padding no row needs any more."""
        with self._cond:
            keep = [i for i, r in enumerate(self._running) if r.finish_reason is None and not r.cancelled]
            if len(keep) == len(self._running):
                return
            self._running = [self._running[i] for i in keep]
            self.metrics.running.set(len(self._running))
            if not keep:
                self._cache, self._mask = None, None
                return
            assert self._mask is not None
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            mask = self._mask.index_select(0, index)
            start = int(mask.any(dim=0).to(torch.long).argmax())
            self._mask = mask[:, start:]
            layer_class = _growable_layer_class()
            self._cache.layers = [
                layer_class(
                    layer.keys.index_select(0, index)[:, :, start:], layer.values.index_select(0, index)[:, :, start:]
                )
                for layer in self._cache.layers
            ]

    # ----------------------------------------------------------------- tokens
    def _sample(self, logits: torch.Tensor, reqs: list[GenRequest]) -> list[int]:
        logits = logits.float()
        tokens = logits.argmax(dim=-1).tolist()
        for i, req in enumerate(reqs):
            if req.temperature < GREEDY_BELOW:
                continue
            row = logits[i] / req.temperature
            probs = torch.softmax(row, dim=-1)
            if req.top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                cumulative = torch.cumsum(sorted_probs, dim=-1)
                sorted_probs[(cumulative - sorted_probs) > req.top_p] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            choice = torch.multinomial(probs.cpu(), 1, generator=req.generator)
            tokens[i] = int(choice)
        return tokens

    def _append(self, req: GenRequest, token: int) -> None:
        now = time.monotonic()
        if req.first_token_at is None:
            req.first_token_at = now
            self.metrics.ttft.observe(now - req.arrival)
        self.metrics.generation_tokens.inc()
        if token in self.eos_ids and not req.ignore_eos:
            req.output_ids.append(token)
            self._finish(req, "stop")
            return
        req.output_ids.append(token)
        text = self.tokenizer.decode(req.output_ids, skip_special_tokens=True)
        longest = max((len(s) for s in req.stop), default=0)
        if longest:
            from_pos = max(0, req.sent - longest)
            hits = [i for i in (text.find(s, from_pos) for s in req.stop) if i >= 0]
            if hits:
                req.text = text[: min(hits)]
                self._finish(req, "stop")
                return
        req.text = text
        if len(req.output_ids) >= req.max_tokens or req.cache_len + 1 >= self.max_model_len:
            self._finish(req, "length")
            return
        safe = len(text)
        for s in req.stop:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    safe = min(safe, len(text) - k)
                    break
        while safe > req.sent and text[safe - 1] == "\ufffd":
            safe -= 1
        if safe > req.sent:
            delta = text[req.sent : safe]
            req.sent = safe
            self._emit(req, ("delta", delta))

    def _finish(self, req: GenRequest, reason: str) -> None:
        req.finish_reason = reason
        if len(req.text) > req.sent:
            self._emit(req, ("delta", req.text[req.sent :]))
            req.sent = len(req.text)
        n = len(req.output_ids)
        if n > 1 and req.first_token_at is not None:
            self.metrics.tpot.observe((time.monotonic() - req.first_token_at) / (n - 1))
        self._emit(req, ("finish", reason, len(req.prompt_ids), n))

    @staticmethod
    def _emit(req: GenRequest, event: tuple) -> None:
        try:
            req.on_event(event)
        except Exception:  # a client that went away must not stop the batch
            log.debug("dropping event for a gone request", exc_info=True)
