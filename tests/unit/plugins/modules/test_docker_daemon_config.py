"""Run autoglm.fleet.docker_daemon_config through Ansible itself on files in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")


@pytest.fixture
def ansible(tmp_path, collections_dir):
    """``ansible(args, *flags)``: `ansible localhost -m autoglm.fleet.docker_daemon_config -a <json>`; the
    host's result."""

    def run(args, *flags):
        env = dict(os.environ)
        # hermetic: no ansible.cfg from the caller (make exports the checkout's: callbacks, inventory)
        env.pop("ANSIBLE_CONFIG", None)
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(collections_dir),
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_LOCALHOST_WARNING="0",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
            ANSIBLE_LOCAL_TEMP=str(tmp_path / ".ansible-local"),
            ANSIBLE_REMOTE_TEMP=str(tmp_path / ".ansible-remote"),
            ANSIBLE_NOCOLOR="1",
        )
        argv = [
            ANSIBLE, "localhost", "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % sys.executable,
            "-m", "autoglm.fleet.docker_daemon_config", "-a", json.dumps(args), *flags,
        ]
        # cwd outside the checkout: the project's ansible.cfg must not shape this run
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=120)
        try:
            output = json.loads(proc.stdout)
        except ValueError:
            pytest.fail("ansible printed no JSON (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
        return output["plays"][0]["tasks"][0]["hosts"]["localhost"]

    return run


def test_check_real_repeat_keeps_foreign_keys(tmp_path, ansible):
    etc = tmp_path / "docker"
    etc.mkdir()
    path = etc / "daemon.json"
    original = '{"dns": ["10.0.0.2"], "runtimes": {"crun": {"path": "/usr/bin/crun"}}}\n'
    path.write_text(original)
    args = {
        "path": str(path),
        "settings": {
            "log-driver": "json-file",
            "log-opts": {"max-size": "100m", "max-file": "3"},
            "live-restore": True,
            "max-concurrent-downloads": 6,
            "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}},
            "default-runtime": "nvidia",
            "features": {"buildkit": True},
        },
    }
    expected = {
        "dns": ["10.0.0.2"],
        "runtimes": {
            "crun": {"path": "/usr/bin/crun"},
            "nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []},
        },
        "log-driver": "json-file",
        "log-opts": {"max-size": "100m", "max-file": "3"},
        "live-restore": True,
        "max-concurrent-downloads": 6,
        "default-runtime": "nvidia",
        "features": {"buildkit": True},
    }

    check = ansible(args, "--check", "--diff")
    assert check.get("failed") is not True, check.get("msg")
    assert check["changed"] is True
    assert check["config"] == expected
    assert check["diff"]["before_header"] == str(path)
    assert json.loads(check["diff"]["after"]) == expected
    assert path.read_text() == original
    assert sorted(os.listdir(etc)) == ["daemon.json"]

    real = ansible(args)
    assert real.get("failed") is not True, real.get("msg")
    assert real["changed"] is True
    on_disk = json.loads(path.read_text())
    assert on_disk == expected == real["config"]
    assert list(on_disk) == list(expected), "existing keys keep their place, new ones are appended"
    assert real["previous"] == json.loads(original)
    assert real["changed_keys"] == [
        "runtimes", "log-driver", "log-opts", "live-restore", "max-concurrent-downloads", "default-runtime",
        "features",
    ]
    assert real["validated_with"] in ("dockerd", "structural")
    with open(real["backup_file"]) as handle:
        assert handle.read() == original
    written = path.read_bytes()

    repeat = ansible(args)
    assert repeat.get("failed") is not True, repeat.get("msg")
    assert repeat["changed"] is False
    assert repeat["changed_keys"] == []
    assert "backup_file" not in repeat
    assert path.read_bytes() == written
    assert sorted(os.listdir(etc)) == sorted(["daemon.json", os.path.basename(real["backup_file"])])


def test_remove_nested_key_through_ansible(tmp_path, ansible):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"runtimes": {"nvidia": {"path": "/n"}, "crun": {"path": "/c"}}, "dns": ["1.1.1.1"]}))
    result = ansible({"path": str(path), "remove": ["runtimes/nvidia"], "backup": False})
    assert result["changed"] is True
    assert json.loads(path.read_text()) == {"runtimes": {"crun": {"path": "/c"}}, "dns": ["1.1.1.1"]}


@pytest.fixture
def rejecting_dockerd(tmp_path):
    script = tmp_path / "dockerd"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--help" ]; then echo "  --validate  Validate daemon configuration and exit"; exit 0; fi\n'
        'echo "the following directives don\'t match any configuration option: bogus-directive" >&2\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    ("content", "extra", "fragments"),
    [
        ('{"dns": ["10.0.0.2"]\n"debug": true}', {"settings": {"live-restore": True}},
         ["is not valid JSON", "line 2 column 1"]),
        ('{"dns": ["10.0.0.2"]}', {"settings": {"insecure-registries": ["registry.lab:5000"]}},
         ["insecure-registries", "allow_insecure_registries: true"]),
        ('{"dns": ["10.0.0.2"]}', {"settings": {"bogus-directive": True}, "dockerd_path": "DOCKERD"},
         ["failed validation (dockerd)", "bogus-directive"]),
        ('{"dns": ["10.0.0.2"]}', {"settings": {"max-concurrent-downloads": "6"}},
         ["failed validation (structural)", "'max-concurrent-downloads' must be a positive integer"]),
        ('{"dns": ["10.0.0.2"]}', {"settings": {"debug": True}, "dockerd_path": "/nonexistent/dockerd"},
         ["dockerd_path /nonexistent/dockerd is not an executable file"]),
        ('{"dns": ["10.0.0.2"]}', {"settings": {"hosts": ["tcp://0.0.0.0:2375"]}},
         ["'hosts'", "controls the host as root", "allow_insecure_tcp_hosts: true"]),
        ('{"registry-mirrors": ["http://m:5000"]}', {"settings": {"debug": True}},
         ["plain HTTP from 'registry-mirrors'", "already in", "allow_insecure_registry_mirrors: true"]),
    ],
    ids=["malformed", "insecure", "dockerd-rejects", "structural-rejects", "bad-dockerd-path", "tcp-hosts",
         "http-mirror"],
)
def test_failures_leave_the_file_alone(tmp_path, rejecting_dockerd, content, extra, fragments, ansible):
    etc = tmp_path / "etc"
    etc.mkdir()
    path = etc / "daemon.json"
    path.write_text(content)
    args = {"path": str(path), **extra}
    if args.get("dockerd_path") == "DOCKERD":
        args["dockerd_path"] = str(rejecting_dockerd)
    result = ansible(args)
    assert result["failed"] is True
    for fragment in fragments:
        assert fragment in result["msg"]
    assert "Traceback" not in json.dumps(result)
    assert path.read_text() == content
    assert os.listdir(etc) == ["daemon.json"]
