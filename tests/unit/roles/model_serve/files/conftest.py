"""Fixtures the tests of the role's host programs share (smoke.py, probe_load.py)."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture
def running():
    """``running(server)``: serve a ThreadingHTTPServer on a thread until the test ends; returns the server."""
    servers = []

    def start(server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
