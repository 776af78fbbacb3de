"""bundle_apt_repo run as Ansible runs it, against the loopback apt archive of conftest.apt_world: check mode writes
nothing, a real run makes the signed flat repository, a repeat changes nothing; bad input is refused by name."""

import os


def args(world, dest, **over):
    base = {"dest": str(dest), "packages": ["autoglm-test-a", "autoglm-test-c"],
            "sources": [{"uris": [world["url"]], "suites": ["test"], "components": ["main"],
                         "signed_by": str(world["keyring"])}],
            "codename": "bookworm", "architecture": "amd64",
            "work_dir": str(world["tmp"] / "apt-state"), "archives_dir": str(world["tmp"] / "apt-archives")}
    return dict(base, **over)


def test_check_then_real_then_unchanged(apt_world, run_module):
    dest = apt_world["tmp"] / "repo"
    check = run_module("bundle_apt_repo", args(apt_world, dest), check=True)
    assert check["changed"] is True, check
    assert check["versions"] == {"autoglm-test-a": "1.0-1", "autoglm-test-b": "2.0-1", "autoglm-test-c": "1.0-1"}
    assert check["totals"]["packages"] == 3 and check["totals"]["download_packages"] == 3
    assert "fingerprint" not in check and not dest.exists()
    assert not [n for n in os.listdir(apt_world["tmp"] / "apt-archives") if n.endswith(".deb")]

    real = run_module("bundle_apt_repo", args(apt_world, dest))
    assert real["changed"] is True and len(real["fingerprint"]) == 40, real
    assert sorted(os.listdir(dest / "pool")) == ["autoglm-test-a_1.0-1_all.deb", "autoglm-test-b_2.0-1_all.deb",
                                                 "autoglm-test-c_1.0-1_all.deb"]
    again = run_module("bundle_apt_repo", args(apt_world, dest))
    assert again["changed"] is False and again["fingerprint"] == real["fingerprint"], again
    assert again["totals"]["cached_packages"] == 3 and again["totals"]["download_bytes"] == 0
    assert run_module("bundle_apt_repo", args(apt_world, dest), check=True)["changed"] is False

    # A smaller closure: the repository is rewritten and the package that left is gone from its pool.
    fewer = run_module("bundle_apt_repo", args(apt_world, dest, packages=["autoglm-test-c"]))
    assert fewer["changed"] is True and os.listdir(dest / "pool") == ["autoglm-test-c_1.0-1_all.deb"]


def test_bad_input_is_refused_before_anything_is_written(apt_world, run_module):
    dest = apt_world["tmp"] / "repo"
    missing_key = args(apt_world, dest)
    missing_key["sources"][0]["signed_by"] = str(apt_world["tmp"] / "no-such-keyring.gpg")
    out = run_module("bundle_apt_repo", missing_key)
    assert out["failed"] and "sources[0].signed_by" in out["msg"] and "is not a file" in out["msg"], out
    wrong_key = args(apt_world, dest)
    wrong_key["sources"][0]["signed_by"] = str(apt_world["other"])
    out = run_module("bundle_apt_repo", wrong_key)
    assert out["failed"] and "apt-get update failed" in out["msg"], out
    out = run_module("bundle_apt_repo", args(apt_world, dest, packages=["autoglm-test-missing"]))
    assert out["failed"] and "autoglm-test-missing" in out["msg"], out
    assert not dest.exists()
