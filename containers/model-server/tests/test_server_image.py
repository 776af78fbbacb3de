"""The model server image: builds from the project's base image and its container answers like the package.

Marked `image` (its own tier: `pytest -m image`); it needs the Docker engine and fails when it is not
reachable. AUTOGLM_SERVER_IMAGE=<tag> reuses an image instead of running build.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

pytestmark = pytest.mark.image
HERE = Path(__file__).resolve()
BUILD = HERE.parents[1] / "build.sh"


def docker(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"docker {' '.join(args)} failed: {done.stderr.strip()}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image() -> str:
    docker("version", "--format", "{{.Server.Version}}")  # fails (not skips) when no engine is reachable
    tag = os.environ.get("AUTOGLM_SERVER_IMAGE")
    if not tag:
        done = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=1800, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        tag = done.stdout.strip().splitlines()[-1]
    return tag


def test_image_metadata(image):
    config = json.loads(docker("image", "inspect", image, "--format", "{{json .Config}}"))
    assert config["Labels"]["ai.autoglm.cuda.version"] == "none"
    assert config["User"] and config["User"].split(":")[0] not in ("", "0", "root")


def test_container_serves(image, tiny_model, tmp_path_factory):
    models = tmp_path_factory.mktemp("image-models")
    target = models / "tiny-llama"
    shutil.copytree(tiny_model, target)
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = f"autoglm-server-test-{os.getpid()}"
    docker(
        "run",
        "--detach",
        "--name",
        name,
        "--publish",
        f"127.0.0.1:{port}:8000",
        "--volume",
        f"{target}:/models:ro",
        "--env",
        "AUTOGLM_SERVED_MODEL_NAME=tiny",
        image,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = docker("inspect", name, "--format", "{{.State.Status}}")
            assert state == "running", docker("logs", name)
            assert time.monotonic() < deadline, "container never became ready: " + docker("logs", name)
            time.sleep(0.5)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60)
        result = client.completions.create(model="tiny", prompt="Hello", max_tokens=5, extra_body={"ignore_eos": True})
        assert result.usage.completion_tokens == 5
        chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert chat.choices[0].message.role == "assistant"
        assert docker("exec", name, "id", "-u") != "0"
        docker("stop", "--time", "30", name, timeout=60)
        assert docker("inspect", name, "--format", "{{.State.ExitCode}}") == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
