"""The lab end to end, after `lab/playbooks/lab.yml` has run on it (lab/scripts/e2e.sh runs these).

Real parts only: the official `openai` client talks to the model server on every GPU-group host over the
lab network; `docker` on the controller execs into the lab hosts to read what their engines run; the
weights are copied back and checked with OpenSSF model-signing's own CLI against the lab's public key.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from openai import OpenAI

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "containers" / "model-server" / "src"))
from autoglm_server.devtools import phone_screenshot_png  # noqa: E402

INVENTORY = os.environ.get("E2E_INVENTORY", "tests/e2e")
# The lab's API key: lab/playbooks/lab.yml makes it once on the controller (0600) and every model server requires it.
API_KEY = (ROOT / ".cache" / "lab-secrets" / "api-key").read_text().strip()
DEFAULT_ROOT = "/opt/autoglm"


def _inventory():
    out = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-inventory"), "-i", INVENTORY, "--list"],
        cwd=ROOT, check=True, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
    )
    return json.loads(out.stdout)


INV = _inventory()
GPU_HOSTS = sorted(
    set(INV["canary"].get("hosts", [])) | set(INV["gpu_hosts"].get("hosts", []))
)
BUILD_HOST = INV["model_build"]["hosts"][0]
# The hosts site.yml prepares with the runtime role (the monitoring host runs Debian's packages only, no venv).
RUNTIME_HOSTS = sorted(set(INV["registry"].get("hosts", [])) | set(GPU_HOSTS))


def host_var(host, name):
    value = INV["_meta"]["hostvars"][host][name]
    # ansible-inventory marks values from inventory plugins as unsafe: {"__ansible_unsafe": "..."}.
    return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value


def on_host(host, *argv):
    """Run argv inside a lab host; return stdout."""
    out = subprocess.run(["docker", "exec", host, *argv], check=True, capture_output=True, text=True)
    return out.stdout


def runtime_root(host):
    """The runtime root the inventory gives the host (docs/runtime.md), the default when it gives none."""
    return INV["_meta"]["hostvars"][host].get("runtime_root", DEFAULT_ROOT)


def state(host, name):
    return json.loads(on_host(host, "cat", "%s/state/%s.json" % (runtime_root(host), name)))


def live_container(host):
    """The colour container the host's front sends its traffic to (the state file's live colour)."""
    return "autoglm-model-server-" + state(host, "model_serve")["live"]


@pytest.fixture(scope="module")
def published():
    record = state(BUILD_HOST, "model_image")
    assert record["digest"].startswith("sha256:") and len(record["digest"]) == 71
    return record


def test_the_lab_has_two_or_more_serving_hosts():
    assert len(GPU_HOSTS) >= 2, GPU_HOSTS


@pytest.mark.parametrize("host", RUNTIME_HOSTS)
def test_the_host_uses_the_inventorys_runtime_root_only(host):
    root = runtime_root(host)
    record = json.loads(on_host(host, "cat", "/etc/ansible/facts.d/autoglm_runtime.fact"))
    assert record["root"] == root and record["python"] == root + "/venv/bin/python", record
    on_host(host, root + "/venv/bin/python", "-c", "import docker, pynvml")
    if root != DEFAULT_ROOT:
        leftover = subprocess.run(["docker", "exec", host, "test", "-e", DEFAULT_ROOT], check=False)
        assert leftover.returncode == 1, "%s has %s although its runtime root is %s" % (host, DEFAULT_ROOT, root)


@pytest.mark.parametrize("host", GPU_HOSTS)
def test_openai_client_gets_a_completion_and_a_chat_answer(host):
    client = OpenAI(base_url="http://%s:8000/v1" % host_var(host, "lab_address"), api_key=API_KEY, timeout=60)
    models = [m.id for m in client.models.list().data]
    assert models == ["tiny"]
    completion = client.completions.create(model="tiny", prompt="Hello", max_tokens=8, temperature=0)
    assert completion.choices[0].text
    assert completion.usage.completion_tokens >= 1
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage.total_tokens > chat.usage.completion_tokens


@pytest.mark.parametrize("host", GPU_HOSTS)
def test_the_api_requires_the_key(host):
    import httpx

    base = "http://%s:8000/v1" % host_var(host, "lab_address")
    assert httpx.get(base + "/models", timeout=30).status_code == 401
    assert httpx.get(base + "/models", headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    assert httpx.get(base + "/models", headers={"Authorization": "Bearer " + API_KEY}, timeout=30).status_code == 200


@pytest.mark.parametrize("host", GPU_HOSTS)
def test_openai_client_sends_a_phone_screenshot_like_open_autoglm(host):
    """What Open-AutoGLM's agent sends every step: a system prompt, then a user turn of [screenshot, text], with the
    agent's sampling parameters, streamed; and its deployment check's non-streamed request."""
    client = OpenAI(base_url="http://%s:8000/v1" % host_var(host, "lab_address"), api_key=API_KEY, timeout=300)
    url = "data:image/png;base64," + base64.b64encode(phone_screenshot_png()).decode()
    messages = [
        {"role": "system", "content": "You are a phone operation agent. Think, then answer with one action."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                     {"type": "text", "text": '{"current_app": "System Home"} Open the settings'}]},
    ]
    params = {"model": "tiny", "messages": messages, "max_tokens": 16, "temperature": 0.0, "top_p": 0.85,
              "frequency_penalty": 0.2}
    answer = client.chat.completions.create(stream=False, **params)
    assert answer.choices[0].message.content
    assert answer.usage.prompt_tokens > 3108  # the 1080x2400 screenshot alone is 3,108 image tokens
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **params)
                       if c.choices)
    assert streamed == answer.choices[0].message.content


@pytest.mark.parametrize("host", GPU_HOSTS)
def test_open_autoglms_own_deployment_check_passes(host):
    """Open-AutoGLM's scripts/check_deployment_en.py, unchanged (containers/model-server/tests/open_autoglm), with
    its own sample (its system prompt and a real phone screenshot), as its README tells a user to run it."""
    vendored = ROOT / "containers" / "model-server" / "tests" / "open_autoglm" / "scripts"
    proc = subprocess.run(
        [sys.executable, str(vendored / "check_deployment_en.py"),
         "--base-url", "http://%s:8000/v1" % host_var(host, "lab_address"), "--apikey", API_KEY, "--model", "tiny",
         "--messages-file", str(vendored / "sample_messages_en.json"), "--max-tokens", "12"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Model inference result:" in proc.stdout
    assert int(proc.stdout.split("Prompt tokens:")[1].split()[0]) > 2000, proc.stdout[-2000:]


@pytest.mark.parametrize("host", GPU_HOSTS)
def test_the_running_container_uses_the_published_digest(host, published):
    # The build host pushed to the registry's push endpoint (the recorded repository, :5001); the fleet pulls the
    # same digest from the read-only pull endpoint (:5000), one image store behind both (docs/registry.md).
    pulled = published["reference"].replace(":5001/", ":5000/", 1)
    assert pulled != published["reference"], published["reference"]
    inspect = json.loads(on_host(host, "docker", "container", "inspect", live_container(host)))[0]
    assert inspect["Config"]["Image"] == pulled
    assert inspect["State"]["Health"]["Status"] == "healthy"
    image = json.loads(on_host(host, "docker", "image", "inspect", inspect["Image"]))[0]
    assert pulled in image["RepoDigests"]
    assert image["Id"] == published["image_id"]
    deployed = state(host, "model_serve")["current"]
    assert deployed["digest"] == published["digest"]
    assert deployed["pinned"] is True


@pytest.mark.parametrize("host", GPU_HOSTS)
def test_the_weights_are_mounted_read_only(host):
    inspect = json.loads(on_host(host, "docker", "container", "inspect", live_container(host)))[0]
    mounts = [m for m in inspect["Mounts"] if m["Destination"] == "/models"]
    assert len(mounts) == 1 and mounts[0]["RW"] is False, mounts
    probe = subprocess.run(
        ["docker", "exec", host, "docker", "exec", live_container(host), "touch", "/models/written-by-the-test"],
        capture_output=True, text=True, check=False,
    )
    assert probe.returncode != 0
    assert "Read-only file system" in probe.stderr


@pytest.mark.parametrize("host", GPU_HOSTS)
def test_the_served_weights_match_the_signature(host, tmp_path):
    inspect = json.loads(on_host(host, "docker", "container", "inspect", live_container(host)))[0]
    source = next(m["Source"] for m in inspect["Mounts"] if m["Destination"] == "/models")
    copy = tmp_path / "weights"
    subprocess.run(["docker", "cp", "%s:%s" % (host, source), str(copy)], check=True)
    shutil.move(copy / "model.sig", tmp_path / "model.sig")
    verify = subprocess.run(
        [str(ROOT / ".venv/bin/model_signing"), "verify", "key", str(copy),
         "--signature", str(tmp_path / "model.sig"),
         "--public_key", str(ROOT / ".cache/lab-model/keys/model.pub")],
        capture_output=True, text=True, check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The same check fails on one flipped byte: the verification above is not vacuous.
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    tampered = subprocess.run(
        [str(ROOT / ".venv/bin/model_signing"), "verify", "key", str(copy),
         "--signature", str(tmp_path / "model.sig"),
         "--public_key", str(ROOT / ".cache/lab-model/keys/model.pub")],
        capture_output=True, text=True, check=False,
    )
    assert tampered.returncode != 0
