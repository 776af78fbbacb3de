# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A signed flat apt repository with the full dependency closure of some packages, made by apt (private).

apt runs on the build machine with a private root: its own sources (the target release's mirrors, checked with
the release's archive keyring), its own package lists, and an EMPTY dpkg status, so it resolves the packages as
for a host on which nothing is installed: the closure is complete whatever the target hosts already have.
``apt-get install -s`` gives the closure (package, version, architecture), ``apt-cache show`` the archive's own
records for them (from the signed indices: SHA-256, size, file name), ``apt-get install --download-only`` the
files, into an archive directory that later runs reuse. Every file is checked against the archive's SHA-256.

The repository is flat (``deb <url> ./``): ``pool/*.deb``, ``Packages`` (the archive's records with
``Filename`` pointing into ``pool/``), ``Packages.gz``, ``Release`` (their SHA-256), and ``InRelease`` /
``Release.gpg`` signed with an OpenPGP key made for this repository and thrown away once it has signed (only its
public half, ``bundle-repo.gpg``, is kept). Hosts use it with ``Signed-By`` that key, which reaches them from the
verified bundle; apt then checks every index and package it fetches. A run whose closure is unchanged rewrites
nothing (same files, same key).
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time

INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*\[([^\]]+)\]\)")
KEY_NAME = "bundle-repo.gpg"
INDEX_FILES = ("Packages", "Packages.gz", "Release", "InRelease", "Release.gpg", KEY_NAME)
_BATCH = 200


class AptRepoError(Exception):
    """apt or gpg failed, or a file does not match the archive; the message says which and what to do."""


def archive_name(name, version, arch):
    """The file name apt gives a downloaded package in its archive directory (``:`` quoted as ``%3a``)."""
    return "%s_%s_%s.deb" % (name, version.replace(":", "%3a"), arch)


def parse_records(text):
    """``apt-cache show`` output -> list of (fields dict, stanza text)."""
    out = []
    for stanza in re.split(r"\n\s*\n", text.strip()):
        if not stanza.strip():
            continue
        fields, key = {}, None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _sep, value = line.partition(":")
                fields[key] = value.strip()
        out.append((fields, stanza.strip("\n")))
    return out


def sources_text(sources):
    """deb822 text for ``[{uris, suites, components, signed_by}]``."""
    blocks = []
    for n, src in enumerate(sources):
        for key in ("uris", "suites", "components", "signed_by"):
            if not src.get(key):
                raise AptRepoError("sources[%d] needs %s" % (n, key))
        blocks.append("Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: %s\n" % (
            " ".join(src["uris"]), " ".join(src["suites"]), " ".join(src["components"]), src["signed_by"]))
    return "\n".join(blocks)


class PrivateApt:
    """apt-get and apt-cache with their own root under ``workdir`` and downloads in ``archives``."""

    def __init__(self, workdir, archives, sources, architecture="amd64", run=subprocess.run):
        self.workdir = os.path.abspath(workdir)
        self.archives = os.path.abspath(archives)
        self.architecture = architecture
        self._run = run
        for sub in ("state/lists/partial", "etc/sources.list.d", "etc/preferences.d", "cache"):
            os.makedirs(os.path.join(self.workdir, sub), exist_ok=True)
        os.makedirs(os.path.join(self.archives, "partial"), exist_ok=True)
        self._write(os.path.join(self.workdir, "status"), "")
        self._write(os.path.join(self.workdir, "etc", "sources.list"), "")
        self._write(os.path.join(self.workdir, "etc", "sources.list.d", "target.sources"), sources_text(sources))

    @staticmethod
    def _write(path, text):
        try:
            with open(path) as f:
                if f.read() == text:
                    return
        except FileNotFoundError:
            pass
        with open(path, "w") as f:
            f.write(text)

    def options(self):
        w = self.workdir
        opts = {
            "Dir::State": w + "/state",
            "Dir::State::status": w + "/status",
            "Dir::Cache": w + "/cache",
            "Dir::Cache::archives": self.archives,
            "Dir::Etc::SourceList": w + "/etc/sources.list",
            "Dir::Etc::SourceParts": w + "/etc/sources.list.d",
            "Dir::Etc::Preferences": w + "/etc/preferences",
            "Dir::Etc::PreferencesParts": w + "/etc/preferences.d",
            "APT::Architecture": self.architecture,
            "APT::Architectures::": self.architecture,
            "Acquire::Languages": "none",
            "APT::Keep-Downloaded-Packages": "true",
            "Binary::apt-get::APT::Keep-Downloaded-Packages": "true",
            "Debug::NoLocking": "true",
            "APT::Get::Show-Versions": "false",
        }
        argv = []
        for key, value in opts.items():
            argv += ["-o", "%s=%s" % (key, value)]
        return argv

    def run(self, tool, *args):
        env = dict(os.environ, LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
        proc = self._run([tool, *self.options(), *args], capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stdout + "\n" + proc.stderr).splitlines() if ln.startswith(("E:", "W:"))]
            raise AptRepoError("%s %s failed (rc %d): %s" % (tool, args[0] if args else "", proc.returncode,
                                                             "; ".join(lines[-8:]) or proc.stderr.strip()[-800:]))
        return proc.stdout

    def update(self):
        """Fetch the target's package lists (signature-checked by apt against ``signed_by``)."""
        self.run("apt-get", "update", "-q", "--error-on=any")

    def resolve(self, packages):
        """The closure of ``packages`` for an empty system: ``[{name, version, arch, filename, size, sha256,
        record}]`` sorted by name, with the archive's own records."""
        if not packages:
            raise AptRepoError("no packages to resolve")
        out = self.run("apt-get", "install", "-s", "-q", "--no-install-recommends", *packages)
        inst = []
        for line in out.splitlines():
            m = INST.match(line)
            if m:
                inst.append(m.groups())
        if not inst:
            raise AptRepoError("apt resolved nothing to install for %s" % " ".join(packages))
        records = {}
        for start in range(0, len(inst), _BATCH):
            batch = inst[start:start + _BATCH]
            text = self.run("apt-cache", "show", *("%s=%s" % (n, v) for n, v, _arch in batch))
            for fields, stanza in parse_records(text):
                records.setdefault((fields.get("Package"), fields.get("Version"), fields.get("Architecture")),
                                   (fields, stanza))
        result = []
        for name, version, arch in sorted(inst):
            try:
                fields, stanza = records[(name, version, arch)]
            except KeyError as exc:
                raise AptRepoError("apt-cache has no record of %s %s (%s)" % (name, version, arch)) from exc
            try:
                result.append({"name": name, "version": version, "arch": arch, "filename": fields["Filename"],
                               "size": int(fields["Size"]), "sha256": fields["SHA256"], "record": stanza})
            except (KeyError, ValueError) as exc:
                raise AptRepoError("the archive's record of %s %s has no %s" % (name, version, exc)) from exc
        return result

    def cached(self, pkg):
        """True when the archive directory already holds ``pkg`` with the archive's SHA-256."""
        path = os.path.join(self.archives, archive_name(pkg["name"], pkg["version"], pkg["arch"]))
        return os.path.isfile(path) and os.path.getsize(path) == pkg["size"] and sha256(path) == pkg["sha256"]

    def download(self, pkgs, missing=None):
        """Download what the archive directory lacks (``missing``, worked out when not given); check every file
        against the archive's SHA-256. Returns the packages that were missing."""
        if missing is None:
            missing = [p for p in pkgs if not self.cached(p)]
        if missing:
            self.run("apt-get", "install", "--download-only", "-y", "-q", "--no-install-recommends",
                     "--allow-downgrades", *("%s=%s" % (p["name"], p["version"]) for p in pkgs))
        for p in missing:
            path = os.path.join(self.archives, archive_name(p["name"], p["version"], p["arch"]))
            if not os.path.isfile(path):
                raise AptRepoError("apt did not download %s %s (%s)" % (p["name"], p["version"], path))
            got = sha256(path)
            if got != p["sha256"]:
                raise AptRepoError("%s does not match the archive (sha256 %s, the signed index says %s); delete it and "
                                   "run again" % (path, got, p["sha256"]))
        return missing


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def packages_index(pkgs):
    """The ``Packages`` text of the flat repository (records as the archive has them, Filename into pool/)."""
    stanzas = []
    for p in sorted(pkgs, key=lambda p: (p["name"], p["version"], p["arch"])):
        lines = []
        for line in p["record"].splitlines():
            if line.startswith("Filename:"):
                line = "Filename: pool/%s" % os.path.basename(p["filename"])
            lines.append(line)
        stanzas.append("\n".join(lines) + "\n")
    return "\n".join(stanzas)


def release_text(files, codename, architecture, date):
    """``Release`` of a flat repository: what it is and the SHA-256 of its indices (``files``: name -> bytes)."""
    lines = [
        "Origin: autoglm.fleet bundle",
        "Label: autoglm.fleet bundle",
        "Suite: %s" % codename,
        "Codename: %s" % codename,
        "Date: %s" % date,
        "Architectures: %s all" % architecture,
        "Description: offline bundle of the packages autoglm.fleet installs (with their dependency closure)",
        "SHA256:",
    ]
    for name, data in sorted(files.items()):
        lines.append(" %s %d %s" % (hashlib.sha256(data).hexdigest(), len(data), name))
    return "\n".join(lines) + "\n"


class EphemeralSigner:
    """An OpenPGP key (Ed25519) that exists only while the repository is signed; its public half is kept."""

    def __init__(self, gpg="gpg", run=subprocess.run):
        self.gpg = gpg
        self._run = run
        self.home = None
        self.fingerprint = None

    def _gpg(self, *args):
        env = dict(os.environ, GNUPGHOME=self.home, LC_ALL="C.UTF-8")
        proc = self._run([self.gpg, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "", *args],
                         capture_output=True, env=env, check=False)
        if proc.returncode != 0:
            raise AptRepoError("gpg %s failed: %s" % (args[0], proc.stderr.decode(errors="replace").strip()[-600:]))
        return proc.stdout

    def __enter__(self):
        self.home = tempfile.mkdtemp(prefix="autoglm-repo-gpg-")
        os.chmod(self.home, 0o700)
        self._gpg("--quick-gen-key", "autoglm.fleet bundle repository <bundle-repo@autoglm.invalid>",
                  "ed25519", "sign", "never")
        for line in self._gpg("--with-colons", "--list-secret-keys").decode().splitlines():
            if line.startswith("fpr:"):
                self.fingerprint = line.split(":")[9]
                break
        if not self.fingerprint:
            raise AptRepoError("gpg made no key")
        return self

    def sign(self, release, directory):
        self._gpg("--local-user", self.fingerprint, "--digest-algo", "SHA512", "--yes", "--clearsign",
                  "--output", os.path.join(directory, "InRelease"), release)
        self._gpg("--local-user", self.fingerprint, "--digest-algo", "SHA512", "--yes", "--detach-sign",
                  "--output", os.path.join(directory, "Release.gpg"), release)

    def export(self):
        return self._gpg("--export", self.fingerprint)

    def __exit__(self, *exc):
        with contextlib.suppress(OSError):
            self._run(["gpgconf", "--kill", "gpg-agent"], env=dict(os.environ, GNUPGHOME=self.home),
                      capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


def _link_or_copy(src, dst):
    tmp = "%s.tmp-%d" % (dst, os.getpid())
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def _write(path, data):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def repo_is_current(dest, pkgs):
    """True when ``dest`` holds exactly this closure, indexed and signed."""
    try:
        with open(os.path.join(dest, "Packages"), "rb") as f:
            if f.read() != packages_index(pkgs).encode():
                return False
    except OSError:
        return False
    if not all(os.path.isfile(os.path.join(dest, name)) for name in INDEX_FILES):
        return False
    pool = os.path.join(dest, "pool")
    want = {os.path.basename(p["filename"]): p for p in pkgs}
    have = set(os.listdir(pool)) if os.path.isdir(pool) else set()
    if have != set(want):
        return False
    return all(os.path.getsize(os.path.join(pool, n)) == p["size"] for n, p in want.items())


def write_repo(dest, pkgs, archives, codename, architecture, signer_factory=EphemeralSigner, now=None):
    """Make ``dest`` the signed flat repository of ``pkgs`` (downloaded in ``archives``); return the key's
    fingerprint, or None when ``dest`` already was exactly that (nothing written)."""
    if repo_is_current(dest, pkgs):
        return None
    pool = os.path.join(dest, "pool")
    os.makedirs(pool, exist_ok=True)
    want = {}
    for p in pkgs:
        base = os.path.basename(p["filename"])
        want[base] = p
        target = os.path.join(pool, base)
        source = os.path.join(archives, archive_name(p["name"], p["version"], p["arch"]))
        if os.path.isfile(target) and (os.path.samefile(target, source) or (
                os.path.getsize(target) == p["size"] and sha256(target) == p["sha256"])):
            continue
        _link_or_copy(source, target)
    for name in os.listdir(pool):
        if name not in want:
            os.unlink(os.path.join(pool, name))
    packages = packages_index(pkgs).encode()
    packages_gz = gzip.compress(packages, compresslevel=9, mtime=0)
    date = email.utils.formatdate(now if now is not None else time.time(), usegmt=True)
    release = release_text({"Packages": packages, "Packages.gz": packages_gz}, codename, architecture, date).encode()
    _write(os.path.join(dest, "Packages"), packages)
    _write(os.path.join(dest, "Packages.gz"), packages_gz)
    _write(os.path.join(dest, "Release"), release)
    with signer_factory() as signer:
        signer.sign(os.path.join(dest, "Release"), dest)
        _write(os.path.join(dest, KEY_NAME), signer.export())
        fingerprint = signer.fingerprint
    for name in ("InRelease", "Release.gpg"):
        os.chmod(os.path.join(dest, name), 0o644)
    return fingerprint


def read_fingerprint(dest, gpg="gpg", run=subprocess.run):
    """The fingerprint of ``dest``'s ``bundle-repo.gpg`` (read with gpg, no keyring touched)."""
    proc = run([gpg, "--batch", "--with-colons", "--show-keys", os.path.join(dest, KEY_NAME)],
               capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    return None
