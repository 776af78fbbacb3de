"""Fixtures the plugin tests share: the checkout's paths, loopback mirrors, scripts loaded as modules, and
modules run the way Ansible runs them (a JSON arguments file, a fresh Python)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COLLECTIONS = ROOT / ".cache" / "collections"

sys.path.insert(0, str(ROOT / "tests" / "unit" / "fixtures_fetch"))
from fault_server import FaultServer  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from support.apt_archive import make_world, stop_agents  # noqa: E402
from support.module_run import run_module as support_run_module  # noqa: E402


@pytest.fixture(scope="session")
def repo_root():
    """The checkout (scripts/, plugins/, ansible.cfg)."""
    return ROOT


@pytest.fixture(scope="session")
def collections_dir():
    """The directory that holds ansible_collections/autoglm/fleet -> this checkout."""
    return COLLECTIONS


@pytest.fixture
def mirror():
    """``mirror(root, **kwargs)``: a started loopback FaultServer serving ``root`` (tests/unit/fixtures_fetch).

    Usable as is or in a ``with`` block (which stops it at the block's end); whatever is still running is
    stopped when the test ends.
    """
    started = []

    def start(root, **kwargs):
        server = FaultServer(str(root), **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.close()


@pytest.fixture
def dead_url(mirror, tmp_path):
    """A loopback URL nothing listens on any more (a mirror that went away)."""
    with mirror(tmp_path) as server:
        return server.url


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name)``: import scripts/<name> (no .py suffix) as a module, to call its functions."""

    def load(name):
        loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(ROOT / "scripts" / name))
        spec = importlib.util.spec_from_loader(loader.name, loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return module

    return load


@pytest.fixture
def run_module(tmp_path):
    """``run_module(name, args, check=False)``: run plugins/modules/<name>.py as Ansible does; its JSON result."""

    def run(name, args, check=False):
        return support_run_module(name, tmp_path, args, check=check)[1]

    return run


@pytest.fixture()
def apt_world(tmp_path):
    """The served archive of tests/support/apt_archive.py, its keyring, and a second key that did not sign it."""
    world = make_world(tmp_path)
    yield world
    world["server"].close()
    stop_agents(world)
