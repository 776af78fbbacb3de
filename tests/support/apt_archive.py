"""A Debian-style apt archive for the tests: packages built with dpkg-deb, an InRelease signed with a gpg key made
for the test, served by a thread on 127.0.0.1 (the bundle tests: module_utils/_apt_repo, bundle_apt_repo and the
bundle role's build). Real dpkg-deb, gpg and apt read it; nothing leaves loopback."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import subprocess
import threading

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


def write_archive(root, home, codename="test", packages=None):
    """A Debian-style archive: pool/, dists/<codename>/main/binary-amd64/Packages(.gz), InRelease signed by home."""
    pool = root / "pool"
    pool.mkdir(parents=True)
    work = root.parent / "build"
    work.mkdir(exist_ok=True)
    stanzas = []
    for name, version, depends in (PACKAGES if packages is None else packages):
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


class Served:
    """A directory served on 127.0.0.1 (a thread) until ``close()``."""

    def __init__(self, directory):
        handler = functools.partial(Quiet, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def shutdown(self):
        """Stop serving (a test that must need nothing more from the network); ``close()`` still frees the port."""
        self.server.shutdown()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def stop_agents(world):
    """Stop the gpg-agents the world's keys started (gpg leaves one running per home directory)."""
    for home in ("gnupg", "other-gnupg"):
        subprocess.run(["gpgconf", "--homedir", str(world["tmp"] / home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)


def make_world(tmp_path, codename="test", packages=None):
    """The served archive, its keyring, and a second key that did not sign it (call ``close()`` on the result's
    ``server`` when done)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    tmp_path.chmod(0o755)  # apt fetches as its _apt user
    make_key(tmp_path / "gnupg")
    make_key(tmp_path / "other-gnupg")
    archive = tmp_path / "archive"
    write_archive(archive, tmp_path / "gnupg", codename, packages)
    keyring = tmp_path / "archive-keyring.gpg"
    keyring.write_bytes(gpg(tmp_path / "gnupg", "--export"))
    other = tmp_path / "other-keyring.gpg"
    other.write_bytes(gpg(tmp_path / "other-gnupg", "--export"))
    served = Served(archive)
    return {"tmp": tmp_path, "archive": archive, "keyring": keyring, "other": other, "server": served,
            "url": served.url}
