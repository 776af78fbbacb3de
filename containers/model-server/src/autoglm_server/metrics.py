"""Prometheus metrics, on a registry of their own (one per server instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TOKEN_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "autoglm_requests", "HTTP requests by endpoint and status code.", ["endpoint", "status"], registry=r
        )
        self.errors = Counter("autoglm_errors", "Error responses by kind.", ["kind"], registry=r)
        self.latency = Histogram(
            "autoglm_request_latency_seconds",
            "End-to-end latency of generation requests.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "autoglm_time_to_first_token_seconds",
            "Time from admission request to the first generated token.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "autoglm_time_per_output_token_seconds",
            "Mean time per generated token after the first, per request.",
            buckets=TOKEN_TIME_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("autoglm_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.generation_tokens = Counter("autoglm_generation_tokens", "Tokens generated.", registry=r)
        self.running = Gauge("autoglm_requests_running", "Requests in the running batch.", registry=r)
        self.waiting = Gauge("autoglm_requests_waiting", "Requests waiting to join the batch.", registry=r)
        self.batch_size = Histogram(
            "autoglm_batch_size", "Sequences per decode forward pass.", buckets=BATCH_BUCKETS, registry=r
        )
        self.prefill = Histogram(
            "autoglm_prefill_seconds",
            "Prefill time per request, by modality (image: the request carries images).",
            ["modality"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter("autoglm_images", "Images decoded and preprocessed for requests.", registry=r)
        self.image_preprocess = Histogram(
            "autoglm_image_preprocess_seconds",
            "Per request with images: decoding, resizing and patching them (off the engine thread).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.image_encode = Histogram(
            "autoglm_image_encode_seconds",
            "Per request with images: the vision tower, run on a preprocessing thread before the request is queued.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.engine_failures = Counter(
            "autoglm_engine_failures", "Requests failed by the engine, by cause (input, server).", ["cause"], registry=r
        )
        self.model_load = Gauge("autoglm_model_load_seconds", "Seconds taken to load the model.", registry=r)
        self.ready = Gauge("autoglm_ready", "1 when the server accepts generation requests.", registry=r)
        self.gpu_memory = Gauge(
            "autoglm_gpu_memory_allocated_bytes", "GPU memory allocated by torch (CUDA only).", registry=r
        )
        self.gpu_memory_reserved = Gauge(
            "autoglm_gpu_memory_reserved_bytes", "GPU memory reserved by torch's allocator (CUDA only).", registry=r
        )
