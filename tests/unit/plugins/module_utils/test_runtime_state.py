"""The runtime state reader against real files (tmp_path) and a real HTTP server on loopback, one edge at a time."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils._runtime_state import (
    MAX_STATE_BYTES,
    RuntimeStateError,
    probe_ready,
    read_state_files,
)

SERVE = {"current": {"digest": "sha256:" + "a" * 64, "weights_revision": "r1"}, "live": "blue", "history": []}


def test_reads_the_files_there_and_leaves_out_the_missing(tmp_path):
    (tmp_path / "model_serve.json").write_text(json.dumps(SERVE))
    found, errors = read_state_files(str(tmp_path), ["model_serve", "model_image", "drain"])
    assert found == {"model_serve": SERVE} and errors == {}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "is not JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b"\xff\xfe", "is not JSON"),
        (b" " * (MAX_STATE_BYTES + 1), "is larger than"),
    ],
)
def test_a_bad_file_is_named_and_the_others_still_read(tmp_path, content, why):
    (tmp_path / "drain.json").write_bytes(content)
    (tmp_path / "model_serve.json").write_text(json.dumps(SERVE))
    found, errors = read_state_files(str(tmp_path), ["model_serve", "drain"])
    assert found == {"model_serve": SERVE}
    assert list(errors) == ["drain"] and why in errors["drain"] and str(tmp_path / "drain.json") in errors["drain"]


def test_a_directory_in_place_of_a_file_is_named(tmp_path):
    (tmp_path / "drain.json").mkdir()
    found, errors = read_state_files(str(tmp_path), ["drain"])
    assert found == {} and "cannot read" in errors["drain"]


def test_a_missing_state_dir_reads_as_no_state(tmp_path):
    assert read_state_files(str(tmp_path / "none"), ["model_serve"]) == ({}, {})


@pytest.mark.parametrize("state_dir", ["", "state", "./state"])
def test_a_relative_state_dir_is_refused(state_dir):
    with pytest.raises(RuntimeStateError, match="state_dir must be an absolute path"):
        read_state_files(state_dir, ["model_serve"])


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", "", "model serve"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path, name):
    with pytest.raises(RuntimeStateError, match="plain names"):
        read_state_files(str(tmp_path), [name])


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = {"/ready": 200, "/loading": 503}.get(self.path, 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    ("path", "status", "ok"), [("/ready", 200, True), ("/loading", 503, False), ("/x", 404, False)]
)
def test_ready_gives_the_http_status(server, path, status, ok):
    assert probe_ready(server + path, 3) == {"checked": True, "url": server + path, "status": status, "ok": ok,
                                             "error": None}


def test_nothing_listening_gives_minus_one_and_why():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = probe_ready("http://127.0.0.1:%d/health/ready" % port, 3)
    assert result["status"] == -1 and result["ok"] is False and "refused" in result["error"].lower()


def test_a_silent_server_times_out_as_minus_one():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # accepts the connection, never answers
        result = probe_ready("http://127.0.0.1:%d/health/ready" % sock.getsockname()[1], 0.5)
    assert result["status"] == -1 and "timed out" in result["error"]


@pytest.mark.parametrize("url", ["", "file:///etc/passwd", "127.0.0.1:8000/health/ready"])
def test_only_http_urls_are_asked(url):
    with pytest.raises(RuntimeStateError, match="ready_url must be an http"):
        probe_ready(url, 3)
