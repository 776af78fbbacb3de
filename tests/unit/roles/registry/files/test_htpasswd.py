"""roles/registry/files/htpasswd.py run as the role runs it (`python -c <program>`, JSON on stdin), with this venv's
Python. It has no bcrypt package, so the hashes come from crypt's Blowfish, which the registry (Go's bcrypt) reads."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

PROGRAM = (Path(__file__).resolve().parents[5] / "roles" / "registry" / "files" / "htpasswd.py").read_text()


def htpasswd(users, existing=""):
    run = subprocess.run([sys.executable, "-c", PROGRAM], input=json.dumps({"users": users, "existing": existing}),
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    return run.stdout


def entries(text):
    return [tuple(line.split(":", 1)) for line in text.splitlines()]


def test_each_user_gets_a_bcrypt_hash_of_its_password_in_order():
    users = [{"name": "fleet", "password": "lab-fleet-password"}, {"name": "ci", "password": 12345}]
    lines = entries(htpasswd(users))
    assert [line[0] for line in lines] == ["fleet", "ci"]
    for (_name, hashed), user in zip(lines, users, strict=True):
        assert hashed.startswith("$2b$")
        assert crypt.crypt(str(user["password"]), hashed) == hashed
        assert crypt.crypt("wrong", hashed) != hashed


def test_an_unchanged_password_keeps_its_hash_and_a_changed_one_gets_a_new_one():
    first = htpasswd([{"name": "fleet", "password": "a"}, {"name": "ci", "password": "b"}])
    second = htpasswd([{"name": "fleet", "password": "a"}, {"name": "ci", "password": "c"}], existing=first)
    old, new = dict(entries(first)), dict(entries(second))
    assert new["fleet"] == old["fleet"]
    assert new["ci"] != old["ci"] and crypt.crypt("c", new["ci"]) == new["ci"]


def test_a_removed_user_is_dropped_and_a_non_bcrypt_hash_is_replaced():
    existing = "fleet:$apr1$abcdefgh$0123456789abcdefghijkl\nold:$2b$12$" + "x" * 53 + "\n"
    lines = dict(entries(htpasswd([{"name": "fleet", "password": "a"}], existing=existing)))
    assert list(lines) == ["fleet"]
    assert lines["fleet"].startswith("$2b$") and crypt.crypt("a", lines["fleet"]) == lines["fleet"]
