"""Unit tests for plugins/plugin_utils/_audit_trail.py: resources, the argument allow-list, scrubbing and the records of
a run, written by the real writer to a file in tmp_path."""

from __future__ import annotations

import json
import re

import pytest
from ansible_collections.autoglm.fleet.plugins.plugin_utils import _audit_trail as at
from ansible_collections.autoglm.fleet.plugins.plugin_utils._audit_chain import AuditLog, verify_file

KEY = b"k" * 32


@pytest.mark.parametrize(
    "action, args, result, expected",
    [
        ("copy", {"dest": "/etc/x", "content": "secret"}, None, {"path": "/etc/x"}),
        ("ansible.legacy.template", {"dest": "/etc/t"}, None, {"path": "/etc/t"}),
        ("ansible.builtin.file", {"path": "/d", "state": "directory"}, None, {"path": "/d"}),
        ("ansible.builtin.slurp", {"src": "/etc/htpasswd"}, None, {"path": "/etc/htpasswd"}),
        ("ansible.builtin.apt", {"name": ["prometheus", "curl"]}, None, {"package": ["prometheus", "curl"]}),
        ("ansible.builtin.systemd_service", {"name": "docker", "state": "restarted"}, None, {"service": "docker"}),
        (
            "ansible.posix.sysctl",
            {"name": "net.core.somaxconn", "value": "4096"},
            None,
            {"sysctl": "net.core.somaxconn"},
        ),
        ("community.general.modprobe", {"name": "tcp_bbr"}, None, {"kernel_module": "tcp_bbr"}),
        (
            "ansible.builtin.uri",
            {"url": "https://u:pw@reg:5000/v2/?token=abc#x"},
            None,
            {"url": "https://reg:5000/v2/"},
        ),
        (
            "ansible.builtin.get_url",
            {"url": "http://m/x", "dest": "/srv/x"},
            None,
            {"path": "/srv/x", "url": "http://m/x"},
        ),
        (
            "community.docker.docker_container",
            {
                "name": "autoglm-model-server",
                "image": "reg:5000/autoglm/model-server@sha256:" + "a" * 64,
                "env": {"K": "v"},
            },
            {"container": {"Image": "sha256:" + "b" * 64}},
            {
                "container": "autoglm-model-server",
                "image": "reg:5000/autoglm/model-server@sha256:" + "a" * 64,
                "digest": "sha256:" + "a" * 64,
                "image_id": "sha256:" + "b" * 64,
            },
        ),
        (
            "community.docker.docker_image_pull",
            {"name": "reg:5000/m", "tag": "1"},
            {"image": {"Id": "sha256:" + "c" * 64, "RepoDigests": ["reg:5000/m@sha256:" + "d" * 64]}},
            {"image": "reg:5000/m", "image_id": "sha256:" + "c" * 64, "digest": "sha256:" + "d" * 64},
        ),
        (
            "community.docker.docker_login",
            {"registry_url": "reg:5000", "password": "pw"},
            None,
            {"registry": "reg:5000"},
        ),
        (
            "autoglm.fleet.model_fetch",
            {"dest": "/srv/models/m", "model_id": "org/m"},
            None,
            {"path": "/srv/models/m", "model": "org/m"},
        ),
        (
            "ansible.builtin.command",
            {"argv": ["/usr/bin/docker", "login", "-p", "pw"]},
            None,
            {"command": "/usr/bin/docker"},
        ),
        ("ansible.builtin.command", {"_raw_params": "echo hi"}, None, {"command": "echo"}),
        ("ansible.builtin.shell", {"_raw_params": "PW=secret do-it"}, None, None),
        ("ansible.builtin.debug", {"msg": "hi"}, None, None),
        ("my.collection.unknown", {"path": "/x"}, None, None),
    ],
)
def test_resource(action, args, result, expected):
    assert at.resource(action, args, result) == expected


@pytest.mark.parametrize(
    "action, args, expected",
    [
        (
            "ansible.builtin.copy",
            {"dest": "/etc/x", "content": "s3cret", "mode": "0600", "src": "/tmp/.source"},
            {"dest": "/etc/x", "mode": "0600"},
        ),
        (
            "ansible.builtin.uri",
            {
                "url": "https://u:p@h/x?k=1",
                "method": "POST",
                "body": "s3cret",
                "headers": {"Authorization": "Bearer s3cret"},
                "url_password": "s3cret",
            },
            {"url": "https://h/x", "method": "POST"},
        ),
        (
            "community.docker.docker_container",
            {"name": "c", "env": {"AUTOGLM_API_KEY": "s3cret"}, "command": ["--k", "s3cret"]},
            {"name": "c"},
        ),
        (
            "community.docker.docker_login",
            {"registry_url": "r", "username": "fleet", "password": "s3cret"},
            {"registry_url": "r", "username": "fleet"},
        ),
        ("ansible.builtin.command", {"_raw_params": "login s3cret", "chdir": "/srv"}, {"chdir": "/srv"}),
        (
            "ansible.builtin.user",
            {"name": "svc", "password": "s3cret", "groups": ["docker"]},
            {"name": "svc", "groups": ["docker"]},
        ),
        ("ansible.builtin.set_fact", {"token": "s3cret"}, {}),
        (
            "ansible.builtin.apt_repository",
            {"repo": "deb http://u:s3cret@mirror/debian bookworm main"},
            {"repo": "deb http://mirror/debian bookworm main"},
        ),
    ],
)
def test_only_allowed_arguments_are_kept(action, args, expected):
    kept = at.allowed_args(action, args)
    assert kept == expected
    assert "s3cret" not in json.dumps(kept)


def test_every_resource_module_has_an_allow_list_naming_its_resource_arguments():
    for action, fields in at.RESOURCES.items():
        allowed = at.ALLOWED_ARGS.get(action, ())
        for names in fields.values():
            assert any(n in allowed for n in names), action


def test_scrub_shortens_long_values():
    assert at.scrub("x" * 5000).endswith("...(4000 more)")
    assert at.scrub(list(range(60)))[-1] == "...(10 more)"
    assert at.scrub({"a": b"bytes"}) == {"a": "b'bytes'"}


@pytest.mark.parametrize(
    "result, message",
    [
        ({"msg": "non-zero return code", "rc": 1}, "non-zero return code"),
        (
            {
                "msg": "One or more items failed",
                "results": [{"failed": False}, {"failed": True, "msg": "no such file"}],
            },
            "One or more items failed; item 1: no such file",
        ),
        ({"stderr": "line1\nE: Unable to locate package x"}, "E: Unable to locate package x"),
        ({}, None),
    ],
)
def test_failure_message(result, message):
    assert at.failure_message(result) == message


@pytest.fixture
def run(tmp_path):
    log = AuditLog(str(tmp_path / "audit.log"), KEY).open()
    yield at.Run(log, "alice", "ctl-1", "/srv/fleet/site.yml")
    log.close()


def records(run):
    with open(run.log.path) as f:
        return [json.loads(x) for x in f]


def test_a_task_record_has_every_field_the_issue_names(run):
    run.start(check=True)
    run.task(
        host="gpu-1",
        action="copy",
        result="failed",
        task="Install the key",
        play="Fleet",
        duration=1.23456,
        args={"dest": "/etc/k", "content": "s3cret"},
        result_data={"msg": "permission denied"},
    )
    rec = records(run)[1]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", rec["time"])
    assert rec["run_id"] == run.run_id and len(rec["run_id"]) == 32
    assert (rec["user"], rec["controller"], rec["playbook"], rec["play"]) == (
        "alice",
        "ctl-1",
        "/srv/fleet/site.yml",
        "Fleet",
    )
    assert (rec["task"], rec["action"], rec["host"], rec["result"]) == (
        "Install the key",
        "ansible.builtin.copy",
        "gpu-1",
        "failed",
    )
    assert rec["resource"] == {"path": "/etc/k"}
    assert rec["args"] == {"dest": "/etc/k"}
    assert rec["duration"] == 1.235
    assert rec["msg"] == "permission denied"
    assert "s3cret" not in json.dumps(records(run))


def test_a_censored_task_keeps_no_argument_resource_or_message(run):
    run.start()
    run.task(
        host="h",
        action="ansible.builtin.copy",
        result="failed",
        task="t",
        play="p",
        censored=True,
        args={"dest": "/etc/secret"},
        result_data={"msg": "s3cret in a message"},
    )
    rec = records(run)[1]
    assert rec["censored"] is True
    assert not {"args", "resource", "msg"} & set(rec)


def test_a_loop_records_each_items_resource_and_counts_censored_items(run):
    run.start()
    items = [
        ({"name": "net.core.somaxconn", "value": "4096"}, {"changed": True}),
        ({"name": "net.ipv4.tcp_congestion_control", "value": "bbr"}, {"changed": False}),
        ({"name": "hidden"}, {"censored": "the output has been hidden"}),
    ]
    run.task(host="h", action="ansible.posix.sysctl", result="changed", task="t", play="p", items=items)
    rec = records(run)[1]
    assert rec["resource"] == [{"sysctl": "net.core.somaxconn"}, {"sysctl": "net.ipv4.tcp_congestion_control"}]
    assert rec["args"] == [
        {"name": "net.core.somaxconn", "value": "4096"},
        {"name": "net.ipv4.tcp_congestion_control", "value": "bbr"},
    ]
    assert (rec["items"], rec["censored_items"]) == (3, 1)
    assert "hidden" not in json.dumps(rec)


def test_run_end_counts_and_status(run):
    run.start()
    run.task(host="h", action="stat", result="ok", task="a", play="p")
    run.task(host="h", action="command", result="failed", task="b", play="p", ignored=True)
    end = run.end(stats={"h": {"ok": 1, "failures": 0}})
    assert (end["count"], end["complete"], end["status"]) == (3, True, "ok")
    assert end["results"] == {"ok": 1, "changed": 0, "failed": 1, "skipped": 0, "unreachable": 0}
    assert verify_file(run.log.path, KEY).finding is None


@pytest.mark.parametrize("result, complete, status", [("unreachable", True, "failed"), ("ok", False, "interrupted")])
def test_run_end_status_for_failures_and_interruptions(run, result, complete, status):
    run.start()
    run.task(host="h", action="stat", result=result, task="a", play="p")
    assert run.end(complete=complete)["status"] == status


def test_an_unknown_result_is_refused(run):
    run.start()
    with pytest.raises(ValueError, match="result must be one of"):
        run.task(host="h", action="stat", result="maybe", task="a", play="p")
