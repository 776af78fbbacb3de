"""The generation engine: one thread that owns the model and runs a continuous batch.

Requests wait in a bounded queue. At every step boundary the engine admits waiting requests (up to
``max_batch_size``), runs each one's prompt alone (prefill), then merges its KV cache into the running
batch (left-padded, with an attention mask). One forward pass then decodes one token for every running
sequence; finished or cancelled sequences leave the batch right after the step that finished them.

Vision-language models (chosen from the checkpoint's config: a ``vision_config`` and an image-text-to-text
architecture, e.g. GLM-4.1V, Open-AutoGLM's model) load with transformers' image-text-to-text auto class and
the checkpoint's processor. Images only change prefill: a request's pixel values go through the vision tower
with its prompt, and its multimodal rotary positions (3-D, ``get_rope_index``) are computed for it alone. The
offset they leave (``rope_delta``: the image tokens take fewer positions than tokens) is kept per sequence,
so every decode step of a merged, left-padded batch gives each row ``cache_len + rope_delta``.

Failures stay with the request that caused them: a prefill that raises fails that request only (400 when
its input caused it, 500 otherwise), a failed join fails the joining requests only, a failed decode fails the
running batch. ``max_consecutive_failures`` failed steps in a row mark the engine failed, which turns
``/health/live`` red so that Docker restarts the container.

Tokenizing, chat templates and images are prepared on a small thread pool (``prepare_*``), never on the
event loop and never on the engine thread.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .config import Settings
from .metrics import Metrics
from .multimodal import ImageError, ImageRef, collect, decode_image, flatten, load_image_bytes

log = logging.getLogger("autoglm_server.engine")
# Temperatures below this are greedy: dividing logits by a tiny temperature overflows to inf/NaN.
GREEDY_BELOW = 1e-3


class EngineUnavailable(Exception):
    """The engine does not admit requests now (loading, draining, stopped or failed): HTTP 503."""


class QueueFull(Exception):
    """The waiting queue is full: HTTP 429."""


class InputError(ValueError):
    """The request's input cannot be turned into a prompt (chat template, images): HTTP 400."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status


@dataclass
class Prepared:
    """A prompt ready for the engine: its token ids and, with images, the processor's tensors."""

    prompt_ids: list[int]
    mm_inputs: dict[str, Any] | None = None
    images: int = 0
    image_tokens: int = 0


@dataclass(eq=False)
class GenRequest:
    prompt_ids: list[int]
    max_tokens: int
    on_event: Callable[[tuple], None]
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    mm_inputs: dict[str, Any] | None = None
    images: int = 0
    # engine state
    rope_delta: int = 0  # multimodal rotary offset: next position = cache_len + rope_delta
    counts: torch.Tensor | None = None  # generated-token counts (frequency/presence penalties)
    seen: torch.Tensor | None = None  # tokens of prompt and output (repetition penalty)
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

    @property
    def penalized(self) -> bool:
        return bool(self.frequency_penalty or self.presence_penalty or self.repetition_penalty != 1.0)


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
        self.processor: Any = None  # vision-language models only
        self.vision = False
        self.image_placeholder = ""
        self.dtype = torch.float32
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
        self.failures = 0  # consecutive steps that failed for a server-side reason
        # Two pools, so that a text request's tokenizing never queues behind another request's images.
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="autoglm-prepare-text")
        self.image_pool = ThreadPoolExecutor(settings.preprocess_threads, thread_name_prefix="autoglm-prepare-image")

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
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.image_pool.shutdown(wait=False, cancel_futures=True)

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
                failed = self.step()
            except Exception as exc:  # a failed decode fails the running batch, the loop goes on
                log.exception("generation step failed")
                self.metrics.errors.labels(kind="engine").inc()
                self._fail_running(f"Generation failed: {type(exc).__name__}: {exc}")
                failed = True
            self.heartbeat = time.monotonic()
            self.failures = self.failures + 1 if failed else 0
            if self.failures >= self.settings.max_consecutive_failures:
                self.fatal = f"{self.failures} generation steps in a row failed"
                log.error("engine marked failed: %s; /health/live turns 503 so the container is restarted", self.fatal)
                self.state = "failed"
                self.metrics.ready.set(0)
                self._fail_all(f"The generation engine failed: {self.fatal}.")
                return

    def _fail_all(self, message: str) -> None:
        with self._cond:
            victims = list(self._running) + list(self._waiting)
            self._running.clear()
            self._waiting.clear()
            self._cache, self._mask = None, None
            self.metrics.running.set(0)
            self.metrics.waiting.set(0)
        for req in victims:
            self._fail_request(req, message, 500)

    def _fail_running(self, message: str) -> None:
        with self._cond:
            victims = list(self._running)
            self._running.clear()
            self._cache, self._mask = None, None
            self.metrics.running.set(0)
        for req in victims:
            self._fail_request(req, message, 500)

    def _fail_request(self, req: GenRequest, message: str, status: int) -> None:
        if req.finish_reason is not None and req.finish_reason != "error":
            return  # it finished (and was told so) before the failure
        req.finish_reason = "error"
        self.metrics.engine_failures.labels(cause="input" if status < 500 else "server").inc()
        self._emit(req, ("error", message, status))

    @staticmethod
    def _classify(exc: Exception, req: GenRequest) -> tuple[str, int]:
        """The message and status of a failed prefill: 400 when the request's input caused it."""
        if isinstance(exc, torch.OutOfMemoryError):
            return (
                f"Out of memory while reading a prompt of {len(req.prompt_ids)} tokens; retry with a shorter "
                "prompt or later.",
                500,
            )
        if isinstance(exc, (ValueError, IndexError)):
            return f"The model cannot read this input: {type(exc).__name__}: {exc}", 400
        return f"Generation failed: {type(exc).__name__}: {exc}", 500

    # ----------------------------------------------------------------- loading
    def _load(self) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

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
        self.dtype = dtype
        model_dir = Path(s.model_dir)
        has_safetensors = any(model_dir.glob("*.safetensors"))
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
        self.vision = is_vision_language(config)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        if self.vision:
            self.processor = load_processor(str(model_dir), config, self.tokenizer)
            self.image_placeholder = image_placeholder(config, self.processor, self.tokenizer)
        auto_class = AutoModelForImageTextToText if self.vision else AutoModelForCausalLM
        placement = load_placement(s, self.device, torch.cuda.device_count() if self.device.type == "cuda" else 0)
        if placement.get("quantization_config") is not None:
            from transformers import BitsAndBytesConfig

            placement["quantization_config"] = BitsAndBytesConfig(**placement["quantization_config"])
        model = auto_class.from_pretrained(
            str(model_dir),
            local_files_only=True,
            dtype=dtype,
            use_safetensors=True if has_safetensors else None,
            trust_remote_code=False,
            **placement,
        )
        if "device_map" in placement:  # spread by accelerate: inputs go to the embedding's device
            self.device = model.get_input_embeddings().weight.device
            log.info("model placed over %s", sorted({str(d) for d in getattr(model, "hf_device_map", {}).values()}))
        else:
            model.to(self.device)
        model.eval()
        if s.quantization == "int8":
            if self.device.type != "cpu":
                raise RuntimeError("quantization=int8 works on CPU only; set AUTOGLM_QUANTIZATION=none")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model
        self._rope_index = getattr(getattr(model, "model", None), "get_rope_index", None) if self.vision else None
        self._encode_images = None
        if self.vision and "mm_encoder_outputs" in inspect.signature(model.forward).parameters:
            self._encode_images = getattr(getattr(model, "model", None), "get_image_features", None)
        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        limit = int(getattr(text_config, "max_position_embeddings", 0) or 0) or 2048
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
        preps = [Prepared(self.tokenizer.encode("Hello", add_special_tokens=True) or [0])]
        if self.vision:  # the vision tower and the processor once, with a small grey image
            import base64
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.new("RGB", (56, 56), (128, 128, 128)).save(buf, format="PNG")
            url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
            preps.append(self._prepare_template([{"role": "user", "content": [{"type": "image"}]}], [url_ref(url)]))
        for prep in preps:
            req = GenRequest(
                prompt_ids=prep.prompt_ids,
                mm_inputs=prep.mm_inputs,
                max_tokens=4,
                temperature=0.0,
                ignore_eos=True,
                on_event=lambda ev: None,
            )
            with self._cond:
                self._enqueue(req)
            while req.finish_reason is None:
                self.step()
            if req.finish_reason == "error":
                raise RuntimeError("the warm-up generation failed (see the log above)")

    # ----------------------------------------------------------------- preparing prompts (thread pool)
    def prepare_text(self, prompt: str) -> Prepared:
        return Prepared(self.tokenizer.encode(prompt, add_special_tokens=True))

    def prepare_chat(self, messages: list[Any]) -> Prepared:
        """Request messages -> prompt ids (and images -> the processor's tensors); raises InputError."""
        try:
            template_messages, refs = collect(messages, self.settings, self.vision)
        except ImageError as exc:
            raise InputError(str(exc), exc.param, exc.status) from None
        return self._prepare_template(template_messages, refs)

    def _prepare_template(self, messages: list[dict], refs: list[ImageRef]) -> Prepared:
        s = self.settings
        images = []
        if refs:
            started = time.monotonic()
            try:
                images = [decode_image(load_image_bytes(ref, s), ref, s) for ref in refs]
            except ImageError as exc:
                raise InputError(str(exc), exc.param, exc.status) from None
        if s.chat_template_content_format == "string" or not self.vision:
            messages = flatten(messages, self.image_placeholder)
        owner = self.processor if self.processor is not None else self.tokenizer
        if getattr(owner, "chat_template", None) or getattr(self.tokenizer, "chat_template", None):
            try:
                text = owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            except Exception as exc:  # jinja2 errors, raise_exception() in templates
                raise InputError(f"messages: the model's chat template rejected them: {exc}", "messages") from None
            special = False
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            special = True
        if not images:
            return Prepared(self.tokenizer.encode(text, add_special_tokens=special))
        try:
            inputs = self.processor(
                text=[text], images=images, return_tensors="pt", images_kwargs=self._image_kwargs()
            )
        except (ValueError, IndexError) as exc:
            raise InputError(f"messages: the model's processor rejected the images: {exc}", "messages") from None
        self.metrics.images.inc(len(images))
        self.metrics.image_preprocess.observe(time.monotonic() - started)
        ids = inputs["input_ids"][0].tolist()
        mm = {k: inputs[k] for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids") if k in inputs}
        image_tokens = int((inputs["mm_token_type_ids"] != 0).sum()) if "mm_token_type_ids" in inputs else 0
        if not image_tokens and self.processor is not None:
            image_token_id = getattr(self.processor, "image_token_id", None)
            image_tokens = sum(1 for t in ids if t == image_token_id)
        if self._encode_images is not None and "pixel_values" in mm:
            mm = self._encode(mm)
        return Prepared(ids, mm, images=len(images), image_tokens=image_tokens)

    def _encode(self, mm: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Run the vision tower here, on a preprocessing thread, so that the engine thread's prefill only reads the
        image embeddings: a screenshot no longer stops the running batch for the whole vision encoder, and the
        encoder's work runs beside the decode steps (another core; on a GPU, overlapped with them)."""
        started = time.monotonic()
        with torch.inference_mode():
            pixels = mm["pixel_values"].to(self.device, self.dtype)
            encoded = self._encode_images(pixels, mm["image_grid_thw"].to(self.device), return_dict=True)
        self.metrics.image_encode.observe(time.monotonic() - started)
        out: dict[str, Any] = {k: v for k, v in mm.items() if k != "pixel_values"}
        out["image_features"] = encoded
        return out

    def _image_kwargs(self) -> dict:
        """Resize images down to ``max_pixels`` the way the model's own processor does (vLLM's mm_processor_kwargs
        max_pixels): it is the image processor's ``longest_edge`` (or ``max_pixels``) size."""
        size = dict(getattr(self.processor.image_processor, "size", None) or {})
        key = "max_pixels" if "max_pixels" in size else "longest_edge"
        size[key] = self.settings.max_pixels
        return {"size": size}

    # ----------------------------------------------------------------- one step
    def step(self) -> bool:
        """Admit waiting requests (prefill each, join the batch), then decode one token for the batch.

        Returns True when a request failed for a server-side reason in this step (the caller counts those);
        a failed decode raises (the caller fails the running batch)."""
        admitted = []
        with self._cond:
            while self._waiting and len(self._running) + len(admitted) < self.settings.max_batch_size:
                req = self._waiting.popleft()
                if req.cancelled:
                    continue
                admitted.append(req)
            self.metrics.waiting.set(len(self._waiting))
        failed = False
        joining = []
        for req in admitted:
            try:
                cache = self._prefill(req)
            except Exception as exc:  # this request fails alone; the others go on
                message, status = self._classify(exc, req)
                log.warning("prefill failed (%s): %s", status, message, exc_info=status >= 500)
                self._fail_request(req, message, status)
                failed = failed or status >= 500
                continue
            finally:
                req.mm_inputs = None  # pixel values are not needed after prefill
            if req.finish_reason is None:
                joining.append((req, cache))
        if joining:
            try:
                self._join(joining)
            except Exception as exc:  # the running batch is untouched (the merge is assigned last)
                log.exception("joining the batch failed")
                for req, _cache in joining:
                    self._fail_request(req, f"Generation failed: {type(exc).__name__}: {exc}", 500)
                failed = True
        if self._running:
            self._decode()
        self._retire()
        return failed

    def _prefill(self, req: GenRequest) -> Any:
        """Run the prompt alone (with its images); sample the first token; return the prompt's KV cache."""
        from transformers import DynamicCache

        started = time.monotonic()
        ids = torch.tensor([req.prompt_ids], dtype=torch.long, device=self.device)
        extra: dict[str, Any] = {}
        if req.mm_inputs:
            features = req.mm_inputs.get("image_features")
            mm = {k: v.to(self.device) for k, v in req.mm_inputs.items() if k != "image_features"}
            if "pixel_values" in mm:
                mm["pixel_values"] = mm["pixel_values"].to(self.dtype)
            if features is not None:  # encoded on a preprocessing thread: the language model reads the embeddings
                extra["mm_encoder_outputs"] = {"image": features}
            if self._rope_index is not None:
                positions, delta = self._rope_index(
                    ids, mm_token_type_ids=mm.get("mm_token_type_ids"), image_grid_thw=mm.get("image_grid_thw")
                )
                extra["position_ids"] = positions
                req.rope_delta = int(delta.reshape(-1)[0])
            extra.update(mm)
        elif self.vision:  # text only on a vision-language model: plain positions, no offset
            extra["position_ids"] = torch.arange(ids.shape[1], device=self.device).unsqueeze(0)
        cache = DynamicCache()
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1, **extra)
        self.metrics.prompt_tokens.inc(len(req.prompt_ids))
        req.cache_len = len(req.prompt_ids)
        token = self._sample(out.logits[:, -1, :], [req])[0]
        self.metrics.prefill.labels(modality="image" if req.images else "text").observe(time.monotonic() - started)
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
        positions = torch.tensor([[r.cache_len + r.rope_delta] for r in running], dtype=torch.long, device=self.device)
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
        for i, req in enumerate(reqs):
            if req.penalized:
                self._penalize(logits[i], req)
        tokens = logits.argmax(dim=-1).tolist()
        for i, req in enumerate(reqs):
            if req.temperature < GREEDY_BELOW:
                continue
            row = logits[i] / req.temperature
            if 0 < req.top_k < row.shape[-1]:
                kth = torch.topk(row, req.top_k).values[-1]
                row = row.masked_fill(row < kth, float("-inf"))
            probs = torch.softmax(row, dim=-1)
            if req.top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                cumulative = torch.cumsum(sorted_probs, dim=-1)
                sorted_probs[(cumulative - sorted_probs) > req.top_p] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            choice = torch.multinomial(probs.cpu(), 1, generator=req.generator)
            tokens[i] = int(choice)
        return tokens

    @staticmethod
    def _penalize(row: torch.Tensor, req: GenRequest) -> None:
        """OpenAI's frequency and presence penalties over the generated tokens, and the repetition penalty
        (CTRL / transformers / vLLM semantics) over prompt and generated tokens, applied in place."""
        if req.counts is None:
            req.counts = torch.zeros(row.shape[-1], dtype=row.dtype, device=row.device)
            req.seen = torch.zeros(row.shape[-1], dtype=torch.bool, device=row.device)
            prompt = torch.tensor([t for t in req.prompt_ids if 0 <= t < row.shape[-1]], dtype=torch.long)
            req.seen[prompt.to(row.device)] = True
        if req.frequency_penalty or req.presence_penalty:
            row -= req.frequency_penalty * req.counts + req.presence_penalty * (req.counts > 0).to(row.dtype)
        if req.repetition_penalty != 1.0:
            assert req.seen is not None
            picked = row[req.seen]
            row[req.seen] = torch.where(picked > 0, picked / req.repetition_penalty, picked * req.repetition_penalty)

    def _append(self, req: GenRequest, token: int) -> None:
        if req.counts is not None and 0 <= token < req.counts.shape[0]:
            req.counts[token] += 1
            assert req.seen is not None
            req.seen[token] = True
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


# --------------------------------------------------------------------------- model families
def is_vision_language(config: Any) -> bool:
    """A checkpoint with a vision tower and an image-text-to-text architecture (GLM-4.1V, Qwen2-VL...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return hasattr(config, "vision_config") and config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def load_processor(model_dir: str, config: Any, tokenizer: Any) -> Any:
    """The checkpoint's processor (image processor, tokenizer, chat template).

    Processors of video-capable models (GLM-4.1V) also ask for a video processor, which needs torchvision;
    PyPI's torchvision wheels are CUDA builds that do not load beside a CPU torch, and this server takes
    images only. Then the same processor class is built without its video processor, from the checkpoint's
    own image processor (its PIL backend when torchvision is absent) and tokenizer."""
    from transformers import AutoImageProcessor, AutoProcessor
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    try:
        return AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    except ImportError as exc:
        log.info("processor without its video processor (%s)", str(exc).strip().splitlines()[0])
    base = PROCESSOR_MAPPING[type(config)]

    class ImageOnlyProcessor(base):  # type: ignore[misc, valid-type]
        @classmethod
        def get_attributes(cls) -> list[str]:
            return [a for a in super().get_attributes() if a != "video_processor"]

    image_processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    return ImageOnlyProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=getattr(tokenizer, "chat_template", None),
    )


def image_placeholder(config: Any, processor: Any, tokenizer: Any) -> str:
    """What one image is in a flattened prompt: the model's begin/image/end tokens (GLM: <|begin_of_image|>
    <|image|><|end_of_image|>), which the processor expands to one image token per merged patch."""
    image = getattr(processor, "image_token", None) or tokenizer.convert_ids_to_tokens(config.image_token_id)
    begin, end = getattr(config, "image_start_token_id", None), getattr(config, "image_end_token_id", None)
    if begin is not None and end is not None:
        return tokenizer.convert_ids_to_tokens(begin) + image + tokenizer.convert_ids_to_tokens(end)
    return image


def url_ref(url: str, where: str = "warm-up") -> ImageRef:
    return ImageRef(url=url, where=where)


def load_placement(settings: Settings, device: torch.device, gpu_count: int) -> dict[str, Any]:
    """from_pretrained's placement arguments: one device (none), a device map over the visible GPUs with each GPU's
    weight budget (``max_memory``, from the role's memory plan), and bitsandbytes' config for bnb-8bit/bnb-4bit."""
    from .config import parse_max_memory

    out: dict[str, Any] = {}
    if settings.quantization.startswith("bnb-"):
        if device.type != "cuda":
            raise RuntimeError(f"quantization={settings.quantization} needs a CUDA device; torch sees none")
        if settings.quantization == "bnb-8bit":
            out["quantization_config"] = {"load_in_8bit": True}
        else:
            compute = torch.float16 if settings.dtype == "float16" else torch.bfloat16
            out["quantization_config"] = {
                "load_in_4bit": True,
                "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_compute_dtype": compute,
                "bnb_4bit_use_double_quant": True,
            }
    if device.type == "cuda" and (settings.max_memory or gpu_count > 1 or "quantization_config" in out):
        out["device_map"] = "auto"
        if settings.max_memory:
            budget = parse_max_memory(settings.max_memory)
            missing = [i for i in budget if i >= gpu_count]
            if missing:
                raise RuntimeError(f"max_memory names GPU {missing} but torch sees {gpu_count}; fix AUTOGLM_MAX_MEMORY")
            out["max_memory"] = budget
    return out
