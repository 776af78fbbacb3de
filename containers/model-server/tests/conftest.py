"""Fixtures for the model server: a tiny random model made here, served by real uvicorn on 127.0.0.1."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from autoglm_server.app import create_app  # noqa: E402
from autoglm_server.config import load_settings  # noqa: E402
from autoglm_server.devtools import make_random_model, make_random_vlm, phone_screenshot_png  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image: builds the model-server container image and runs it (needs docker)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server at {base} did not become ready in {timeout}s")


class ThreadServer:
    """A real uvicorn server in a thread of this process."""

    def __init__(self, **overrides: object) -> None:
        import uvicorn

        self.port = free_port()
        self.settings = load_settings(env={}, host="127.0.0.1", port=self.port, **overrides)
        self.app = create_app(self.settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base = f"http://127.0.0.1:{self.port}"
        self.model = self.settings.model_name

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_ready(self.base)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_model(tmp_path_factory.mktemp("model") / "tiny-llama", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init GLM-4.1V (Open-AutoGLM's architecture) with processor and chat template."""
    return make_random_vlm(tmp_path_factory.mktemp("model") / "tiny-glm4v", seed=0)


@pytest.fixture(scope="session")
def vlm_server(tiny_vlm: Path):
    """The VLM served with test-sized image limits; remote images allowed from 127.0.0.1 only."""
    with ThreadServer(
        model_dir=str(tiny_vlm),
        served_model_name="autoglm-phone-9b-multilingual",
        max_batch_size=8,
        max_waiting=64,
        max_image_pixels=20_000_000,
        max_image_bytes=4 * 1024 * 1024,
        max_request_bytes=8 * 1024 * 1024,
        allowed_image_hosts="127.0.0.1",
        image_fetch_timeout=5,
    ) as srv:
        yield srv


def data_url(data: bytes, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="session")
def screenshot() -> bytes:
    return phone_screenshot_png()


@pytest.fixture(name="make_screenshot")
def make_screenshot_fixture():
    return phone_screenshot_png


@pytest.fixture(name="data_url")
def data_url_fixture():
    return data_url


@pytest.fixture(scope="session")
def server(tiny_model: Path):
    with ThreadServer(model_dir=str(tiny_model), max_batch_size=8, max_waiting=64, max_model_len=256) as srv:
        yield srv


@pytest.fixture(scope="session")
def thread_server() -> type[ThreadServer]:
    return ThreadServer


@pytest.fixture(name="metric_value")
def metric_value_fixture():
    return metric_value


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample (name{labels}) in a Prometheus text exposition; 0 when absent."""
    key = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
