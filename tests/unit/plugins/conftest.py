"""Fixtures the plugin tests share: the checkout's paths, loopback mirrors, scripts loaded as modules, and
modules run the way Ansible runs them (a JSON arguments file, a fresh Python)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COLLECTIONS = ROOT / ".cache" / "collections"

sys.path.insert(0, str(ROOT / "tests" / "unit" / "fixtures_fetch"))
from fault_server import FaultServer  # noqa: E402


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
        args = dict(args, _ansible_check_mode=check, _ansible_tmpdir=str(tmp_path))
        path = tmp_path / "args.json"
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
        module = ROOT / "plugins" / "modules" / ("%s.py" % name)
        proc = subprocess.run([sys.executable, str(module), str(path)], capture_output=True, text=True, env=env,
                              check=False)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            pytest.fail("%s printed no JSON (rc %d):\n%s\n%s" % (name, proc.returncode, proc.stdout, proc.stderr))

    return run


# A Debian-style apt archive on loopback (module_utils/_apt_repo and bundle_apt_repo tests): packages built with
# dpkg-deb, an InRelease signed with a gpg key made for the test, served by a thread on 127.0.0.1.
# name, version, Depends
PACKAGES = [
    ("autoglm-test-a", "1.0-1", "autoglm-test-b (>= 2.0)"),
    ("autoglm-test-b", "1.0-1", None),
    ("autoglm-test-b", "2.0-1", None),
    ("autoglm-test-c", "1.0-1", None),
]


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def gpg(home, *args):
    return subprocess.run(["gpg", "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "", *args],
                          env=dict(os.environ, GNUPGHOME=str(home)), capture_output=True, check=True).stdout


def make_key(home):
    home.mkdir(mode=0o700)
    gpg(home, "--quick-gen-key", "test archive <archive@autoglm.invalid>", "ed25519", "sign", "never")


def build_deb(work, name, version, depends):
    root = work / ("%s_%s" % (name, version))
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "README").write_text("%s %s\n" % (name, version))
    control = ["Package: %s" % name, "Version: %s" % version, "Architecture: all",
               "Maintainer: autoglm.fleet tests <tests@autoglm.invalid>", "Description: a test package"]
    if depends:
        control.append("Depends: %s" % depends)
    (root / "DEBIAN/control").write_text("\n".join(control) + "\n")
    deb = work / ("%s_%s_all.deb" % (name, version))
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb, control


def write_archive(root, home, codename="test"):
    """A Debian-style archive: pool/, dists/<codename>/main/binary-amd64/Packages(.gz), InRelease signed by home."""
    pool = root / "pool"
    pool.mkdir(parents=True)
    work = root.parent / "build"
    work.mkdir(exist_ok=True)
    stanzas = []
    for name, version, depends in PACKAGES:
        deb, control = build_deb(work, name, version, depends)
        shutil.copy(deb, pool / deb.name)
        fields = [*control, "Filename: pool/%s" % deb.name, "Size: %d" % deb.stat().st_size, "SHA256: %s" % sha256(deb)]
        stanzas.append("\n".join(fields) + "\n")
    index_dir = root / "dists" / codename / "main" / "binary-amd64"
    index_dir.mkdir(parents=True)
    packages = "\n".join(stanzas).encode()
    (index_dir / "Packages").write_bytes(packages)
    (index_dir / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    lines = ["Origin: test", "Suite: %s" % codename, "Codename: %s" % codename, "Architectures: amd64",
             "Components: main", "Date: Sat, 05 Dec 2026 00:00:00 UTC", "SHA256:"]
    for rel in ("main/binary-amd64/Packages", "main/binary-amd64/Packages.gz"):
        data = (root / "dists" / codename / rel).read_bytes()
        lines.append(" %s %d %s" % (hashlib.sha256(data).hexdigest(), len(data), rel))
    release = root / "dists" / codename / "Release"
    release.write_text("\n".join(lines) + "\n")
    gpg(home, "--yes", "--clearsign", "--output", str(release.parent / "InRelease"), str(release))


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def apt_world(tmp_path):
    """The served archive, its keyring, and a second key that did not sign it."""
    tmp_path.chmod(0o755)  # apt fetches as its _apt user
    make_key(tmp_path / "gnupg")
    make_key(tmp_path / "other-gnupg")
    archive = tmp_path / "archive"
    write_archive(archive, tmp_path / "gnupg")
    keyring = tmp_path / "archive-keyring.gpg"
    keyring.write_bytes(gpg(tmp_path / "gnupg", "--export"))
    other = tmp_path / "other-keyring.gpg"
    other.write_bytes(gpg(tmp_path / "other-gnupg", "--export"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(archive)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"tmp": tmp_path, "archive": archive, "keyring": keyring, "other": other, "server": server,
           "url": "http://127.0.0.1:%d" % server.server_address[1]}
    server.shutdown()
    server.server_close()
