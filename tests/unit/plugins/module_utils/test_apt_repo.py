"""module_utils/_apt_repo against a real apt archive served on loopback: packages built with dpkg-deb, an index
signed with a gpg key made for the test, apt-get and gpg run for real (no network beyond 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils import _apt_repo as apt_repo


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def private_apt(apt_world, name="apt", signed_by=None):
    sources = [{"uris": [apt_world["url"]], "suites": ["test"], "components": ["main"],
                "signed_by": str(signed_by or apt_world["keyring"])}]
    return apt_repo.PrivateApt(apt_world["tmp"] / name, apt_world["tmp"] / "archives", sources, architecture="amd64")


def test_the_closure_comes_with_the_archives_own_records(apt_world):
    apt = private_apt(apt_world)
    apt.update()
    pkgs = apt.resolve(["autoglm-test-a"])
    assert [(p["name"], p["version"], p["arch"]) for p in pkgs] == [
        ("autoglm-test-a", "1.0-1", "all"), ("autoglm-test-b", "2.0-1", "all")]
    for p in pkgs:
        served = apt_world["archive"] / p["filename"]
        assert p["sha256"] == sha256(served) and p["size"] == served.stat().st_size
        assert p["record"].startswith("Package: %s\n" % p["name"]) and "SHA256: " + p["sha256"] in p["record"]


def test_download_checks_every_file_and_reuses_what_it_has(apt_world):
    apt = private_apt(apt_world)
    apt.update()
    pkgs = apt.resolve(["autoglm-test-a"])
    assert [p["name"] for p in apt.download(pkgs)] == ["autoglm-test-a", "autoglm-test-b"]
    for p in pkgs:
        path = apt_world["tmp"] / "archives" / apt_repo.archive_name(p["name"], p["version"], p["arch"])
        assert sha256(path) == p["sha256"]
    apt_world["server"].shutdown()  # a second run needs nothing from the network
    assert apt.download(pkgs) == []


def test_a_package_that_does_not_match_the_signed_index_is_refused(apt_world):
    apt = private_apt(apt_world)
    apt.update()
    pkgs = apt.resolve(["autoglm-test-a"])
    served = apt_world["archive"] / pkgs[1]["filename"]
    served.write_bytes(served.read_bytes()[:-16] + b"\0" * 16)  # same size, other bytes
    with pytest.raises(apt_repo.AptRepoError, match=r"apt-get install failed .*(Hash Sum mismatch|hash)"):
        apt.download(pkgs)
    bad = apt_repo.archive_name(pkgs[1]["name"], pkgs[1]["version"], pkgs[1]["arch"])
    assert not (apt_world["tmp"] / "archives" / bad).exists()


def test_an_archive_signed_by_another_key_is_refused(apt_world):
    apt = private_apt(apt_world, signed_by=apt_world["other"])
    with pytest.raises(apt_repo.AptRepoError, match=r"apt-get update failed .*(NO_PUBKEY|not signed|signature)"):
        apt.update()


def test_an_unknown_package_is_an_error_that_names_it(apt_world):
    apt = private_apt(apt_world)
    apt.update()
    with pytest.raises(apt_repo.AptRepoError, match="autoglm-test-missing"):
        apt.resolve(["autoglm-test-missing"])


def test_the_flat_repository_is_signed_and_apt_installs_from_it(apt_world):
    apt = private_apt(apt_world)
    apt.update()
    pkgs = apt.resolve(["autoglm-test-a"])
    apt.download(pkgs)
    dest = apt_world["tmp"] / "repo"
    fingerprint = apt_repo.write_repo(str(dest), pkgs, str(apt_world["tmp"] / "archives"), "bookworm", "amd64")
    assert fingerprint and apt_repo.read_fingerprint(str(dest)) == fingerprint
    assert sorted(os.listdir(dest / "pool")) == ["autoglm-test-a_1.0-1_all.deb", "autoglm-test-b_2.0-1_all.deb"]
    for name in apt_repo.INDEX_FILES:
        assert (dest / name).is_file(), name
    # The signature checks with the kept public key alone; the private key is gone.
    subprocess.run(["gpgv", "--keyring", str(dest / apt_repo.KEY_NAME), str(dest / "InRelease")], check=True,
                   capture_output=True)
    # Unchanged closure: nothing is written again (same files, same key).
    before = {name: (dest / name).stat().st_mtime_ns for name in apt_repo.INDEX_FILES}
    assert apt_repo.write_repo(str(dest), pkgs, str(apt_world["tmp"] / "archives"), "bookworm", "amd64") is None
    assert {name: (dest / name).stat().st_mtime_ns for name in apt_repo.INDEX_FILES} == before

    # A host reads it as a flat repository (deb <dir> ./) with Signed-By the kept key, and resolves from it alone.
    apt_world["server"].shutdown()
    host = apt_repo.PrivateApt(apt_world["tmp"] / "host", apt_world["tmp"] / "host-archives",
                               [{"uris": ["file:" + str(dest)], "suites": ["test"], "components": ["main"],
                                 "signed_by": str(dest / apt_repo.KEY_NAME)}], architecture="amd64")
    (apt_world["tmp"] / "host/etc/sources.list.d/target.sources").write_text(
        "Types: deb\nURIs: file:%s\nSuites: ./\nSigned-By: %s\n" % (dest, dest / apt_repo.KEY_NAME))
    host.update()
    got = host.resolve(["autoglm-test-a"])
    assert [(p["name"], p["version"], p["sha256"]) for p in got] == [
        (p["name"], p["version"], p["sha256"]) for p in pkgs]
    assert all(p["filename"].startswith("./pool/") or p["filename"].startswith("pool/") for p in got)
    # Tampering with the repository after it was signed is caught by apt (on a host that has not read it yet).
    (dest / "Packages").write_bytes((dest / "Packages").read_bytes() + b"\n")
    (dest / "Packages.gz").unlink()
    late = apt_repo.PrivateApt(apt_world["tmp"] / "late", apt_world["tmp"] / "late-archives",
                               [{"uris": ["file:" + str(dest)], "suites": ["test"], "components": ["main"],
                                 "signed_by": str(dest / apt_repo.KEY_NAME)}], architecture="amd64")
    (apt_world["tmp"] / "late/etc/sources.list.d/target.sources").write_text(
        "Types: deb\nURIs: file:%s\nSuites: ./\nSigned-By: %s\n" % (dest, dest / apt_repo.KEY_NAME))
    with pytest.raises(apt_repo.AptRepoError, match="apt-get update failed"):
        late.update()
