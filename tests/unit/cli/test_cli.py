"""Usage errors exit 2 with a sentence that says what to do, before anything runs."""

from __future__ import annotations

import pathlib

import pytest
from autoglm_fleet import EXIT_OK, EXIT_USAGE
from autoglm_fleet.cli import main

PROJECT = pathlib.Path(__file__).resolve().parents[3]


def project(tmp_path: pathlib.Path, *playbooks: str) -> pathlib.Path:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "galaxy.yml").write_text("namespace: autoglm\nname: fleet\nversion: 1.2.3\n")
    for name in ("site.yml", *playbooks):
        (tmp_path / "playbooks" / name).write_text("---\n[]\n")
    (tmp_path / "hosts").write_text("h ansible_connection=local\n")
    return tmp_path


def test_no_command(capsys):
    assert main([]) == EXIT_USAGE
    assert "a command is required" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["up", "--no-such-option"])
    assert exc.value.code == EXIT_USAGE


def test_a_missing_inventory(capsys, tmp_path):
    p = project(tmp_path)
    assert main(["up", "--project", str(p), "-i", str(tmp_path / "nope")]) == EXIT_USAGE
    assert "inventory %s does not exist; pass -i" % (tmp_path / "nope") in capsys.readouterr().err


def test_rollback_before_blue_green_has_landed(capsys, tmp_path):
    p = project(tmp_path)
    assert main(["rollback", "--project", str(p), "-i", str(p / "hosts")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "rollback needs playbooks/rollback.yml" in err and "blue-green" in err


@pytest.mark.parametrize("name", ["../site", "/etc/passwd", ".hidden", "missing"])
def test_play_takes_a_playbook_name_of_the_project(capsys, tmp_path, name):
    p = project(tmp_path, "registry_gc.yml")
    assert main(["play", name, "--project", str(p), "-i", str(p / "hosts")]) == EXIT_USAGE
    assert "autoglm-fleet: error:" in capsys.readouterr().err


def test_not_a_checkout(capsys, tmp_path):
    assert main(["status", "--project", str(tmp_path)]) == EXIT_USAGE
    assert "is not a checkout of autoglm.fleet" in capsys.readouterr().err


def test_audit_verify_without_a_key(capsys, tmp_path, monkeypatch):
    p = project(tmp_path)
    (p / "scripts").mkdir()
    (p / "scripts" / "audit-verify").write_text("")
    monkeypatch.delenv("AUTOGLM_AUDIT_KEY_FILE", raising=False)
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    assert main(["audit", "verify", "--project", str(p)]) == EXIT_USAGE
    assert "no key" in capsys.readouterr().err


def test_the_version_lives_in_galaxy_yml(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGLM_FLEET_PROJECT", str(project(tmp_path)))
    assert main(["--version"]) == EXIT_OK
    assert "collection autoglm.fleet 1.2.3" in capsys.readouterr().out


def test_the_cli_package_has_the_collection_version():
    text = (PROJECT / "cli" / "pyproject.toml").read_text()
    galaxy = (PROJECT / "galaxy.yml").read_text()
    version = next(line.split(":", 1)[1].strip() for line in galaxy.splitlines() if line.startswith("version:"))
    assert 'version = "%s"' % version in text


def test_bundle_needs_an_action(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(project(tmp_path, "bundle.yml", "bundle_verify.yml"))
    assert main(["bundle"]) == EXIT_USAGE
    assert "bundle needs an action: build or verify" in capsys.readouterr().err


def test_bundle_build_update_options_go_together(capsys, tmp_path):
    p = project(tmp_path, "bundle.yml")
    assert main(["bundle", "build", "--project", str(p), "-i", str(p / "hosts"), "--update-base", "/b"]) == EXIT_USAGE
    assert "--update-base and --update-dir go together" in capsys.readouterr().err


def test_bundle_verify_refuses_what_is_not_a_bundle_before_running(capsys, tmp_path):
    p = project(tmp_path, "bundle_verify.yml")
    key = tmp_path / "op.pub"
    key.write_text("not read here\n")
    assert main(["bundle", "verify", str(tmp_path), "--public-key", str(key), "--project", str(p)]) == EXIT_USAGE
    assert "is not a bundle (no manifest.json there)" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{}")
    missing = str(tmp_path / "missing.pub")
    assert main(["bundle", "verify", str(tmp_path), "--public-key", missing, "--project", str(p)]) == EXIT_USAGE
    assert "the public key %s is not a file" % missing in capsys.readouterr().err


def test_bundle_verify_needs_its_key(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["bundle", "verify", str(tmp_path)])
    assert exc.value.code == EXIT_USAGE
    assert "--public-key" in capsys.readouterr().err
