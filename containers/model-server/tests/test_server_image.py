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


def test_container_serves(image, tiny_vlm, screenshot, data_url, tmp_path_factory):
    """The image serves a vision-language model (Pillow and the processor are in it) to the openai client, with
    an API key from a mounted file, as the model_serve role runs it: no capabilities, a read-only root file
    system with a tmpfs /tmp, no-new-privileges, a pids limit."""
    models = tmp_path_factory.mktemp("image-models")
    target = models / "tiny-glm4v"
    shutil.copytree(tiny_vlm, target)
    key = models / "api-key"
    key.write_text("test-key-5f1c\n")
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
        "--volume",
        f"{key}:/run/secrets/autoglm-api-key:ro",
        "--env",
        "AUTOGLM_SERVED_MODEL_NAME=tiny",
        "--env",
        "AUTOGLM_API_KEY_FILE=/run/secrets/autoglm-api-key",
        "--cap-drop",
        "ALL",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,nosuid,nodev,size=256m",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        "512",
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
        assert httpx.get(base + "/v1/models").status_code == 401
        client = openai.OpenAI(base_url=base + "/v1", api_key="test-key-5f1c", max_retries=0, timeout=120)
        result = client.completions.create(model="tiny", prompt="Hello", max_tokens=5, extra_body={"ignore_eos": True})
        assert result.usage.completion_tokens == 5
        messages = [
            {"role": "system", "content": "You are a phone agent."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_url(screenshot)}},
                    {"type": "text", "text": "Open the settings"},
                ],
            },
        ]
        chat = client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=3, temperature=0.0, top_p=0.85, frequency_penalty=0.2
        )
        assert chat.choices[0].message.role == "assistant"
        assert chat.usage.prompt_tokens > 3108
        assert docker("exec", name, "id", "-u") != "0"
        docker("stop", "--time", "30", name, timeout=60)
        assert docker("inspect", name, "--format", "{{.State.ExitCode}}") == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
