"""Open-AutoGLM's own client code, unchanged (tests/open_autoglm, its README), against the real server.

The server runs the tiny GLM-4.1V with an API key and its default limits, as `model_serve` runs it on a fleet:
- the project's deployment check (`scripts/check_deployment_en.py`) as a program, with its own sample messages
  (its system prompt and a real phone screenshot), exits 0 and prints the model's text and the token counts;
- the phone agent's `ModelClient` streams a reply to the messages `phone_agent/agent.py` builds (system prompt, a
  screenshot turn; then the next step with the first turn's image removed and the assistant's answer in between),
  and parses it;
- without the key, the same check fails with the server's 401.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

OPEN_AUTOGLM = Path(__file__).resolve().parent / "open_autoglm"
CHECK = OPEN_AUTOGLM / "scripts" / "check_deployment_en.py"
SAMPLE = OPEN_AUTOGLM / "scripts" / "sample_messages_en.json"
API_KEY = "open-autoglm-test-key-71c2"


@pytest.fixture(scope="module")
def keyed_vlm_server(tiny_vlm: Path, thread_server):
    """The VLM with an API key and the server's default image and request limits."""
    with thread_server(model_dir=str(tiny_vlm), served_model_name="autoglm-phone-9b-multilingual",
                       api_key=API_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def phone_agent(monkeypatch_module):
    monkeypatch_module.syspath_prepend(str(OPEN_AUTOGLM))
    import phone_agent.config
    import phone_agent.model.client

    return phone_agent


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def run_check(server, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), "--base-url", server.base + "/v1", "--model", server.model,
         "--messages-file", str(SAMPLE), "--max-tokens", "12", *extra],
        capture_output=True, text=True, timeout=300, check=False,
    )


def test_the_sample_is_a_screenshot_request():
    messages = json.loads(SAMPLE.read_text())
    assert [m["role"] for m in messages] == ["system", "user"]
    parts = messages[1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert len(parts[0]["image_url"]["url"]) > 500_000


def test_open_autoglm_deployment_check_passes(keyed_vlm_server):
    proc = run_check(keyed_vlm_server, "--apikey", API_KEY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Model inference result:" in proc.stdout
    prompt_tokens = int(proc.stdout.split("Prompt tokens:")[1].split()[0])
    completion_tokens = int(proc.stdout.split("Completion tokens:")[1].split()[0])
    # The screenshot's image tokens are counted (the system prompt and the text alone are well under 1,500).
    assert prompt_tokens > 2_000, proc.stdout
    assert 1 <= completion_tokens <= 12


def test_open_autoglm_deployment_check_without_the_key_gets_401(keyed_vlm_server):
    proc = run_check(keyed_vlm_server)  # the script's default key, "EMPTY"
    assert proc.returncode == 1
    assert "AuthenticationError" in proc.stdout, proc.stdout[-2000:]
    assert "401" in proc.stdout


def images_seen(server, metric_value) -> float:
    import httpx

    text = httpx.get(server.base + "/metrics", headers={"Authorization": "Bearer " + API_KEY}, timeout=10).text
    return metric_value(text, "autoglm_images_total")


def test_phone_agent_model_client_streams_two_steps(keyed_vlm_server, phone_agent, screenshot, metric_value):
    from phone_agent.config import get_system_prompt
    from phone_agent.model.client import MessageBuilder, ModelClient, ModelConfig

    client = ModelClient(ModelConfig(base_url=keyed_vlm_server.base + "/v1", api_key=API_KEY,
                                     model_name=keyed_vlm_server.model, max_tokens=16, lang="en"))
    shot = base64.b64encode(screenshot).decode()
    images_before = images_seen(keyed_vlm_server, metric_value)
    # Step 1, as PhoneAgent._execute_step builds it.
    context = [
        MessageBuilder.create_system_message(get_system_prompt("en")),
        MessageBuilder.create_user_message(
            text="Open the settings app\n\n" + MessageBuilder.build_screen_info("System Home"), image_base64=shot),
    ]
    first = client.request(context)
    assert first.raw_content, "an empty reply"
    assert first.time_to_first_token is not None
    assert first.total_time >= first.time_to_first_token
    # Step 2: the first turn loses its image, the answer joins the context, a new screenshot turn follows.
    context[-1] = MessageBuilder.remove_images_from_message(context[-1])
    context.append(MessageBuilder.create_assistant_message(f"<think>{first.thinking}</think><answer>{first.action}</answer>"))
    context.append(MessageBuilder.create_user_message(
        text="** Screen Info **\n\n" + MessageBuilder.build_screen_info("Settings"), image_base64=shot))
    second = client.request(context)
    assert second.raw_content
    # One image per step reached the server: the first turn's was removed from the second request.
    assert images_seen(keyed_vlm_server, metric_value) == images_before + 2
