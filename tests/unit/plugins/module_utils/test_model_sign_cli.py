"""scripts/model-sign, run as the operator runs it: what its child processes can see."""

from __future__ import annotations

import os
import subprocess
import sys

SITECUSTOMIZE = """\
import os
if os.environ.get("ARGV_LOG"):
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read().rstrip(b"\\0").split(b"\\0")
    with open("/proc/self/environ", "rb") as f:
        environ = f.read()
    with open(os.environ["ARGV_LOG"], "a") as log:
        log.write(repr((os.getpid(), [a.decode() for a in cmdline], environ)) + "\\n")
"""


def test_key_password_never_reaches_a_childs_command_line(tmp_path, repo_root):
    """Every Python process model-sign starts logs its /proc/self/cmdline (what ps shows) and environment."""
    password = "pw-" + os.urandom(8).hex()
    sign = [sys.executable, str(repo_root / "scripts" / "model-sign")]
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(4096))
    (model / "config.json").write_text("{}\n")
    log = tmp_path / "argv.log"
    env = dict(os.environ, MODEL_KEY_PASSWORD=password)
    subprocess.run([*sign, "keygen", "--out", str(tmp_path / "key"), "--password-env", "MODEL_KEY_PASSWORD"],
                   env=env, check=True, capture_output=True)
    assert b"ENCRYPTED" in (tmp_path / "key.key").read_bytes()

    env.update(PYTHONPATH=str(site), ARGV_LOG=str(log))
    proc = subprocess.run([*sign, "sign", str(model), "--private-key", str(tmp_path / "key.key"),
                           "--password-env", "MODEL_KEY_PASSWORD", "--model-id", "org/m", "--revision", "r1"],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    processes = [eval(line) for line in log.read_text().splitlines()]  # noqa: S307 - our own repr() lines
    parent = [p for p in processes if p[1][:2] == sign]
    children = [p for p in processes if p[1][:2] != sign]
    assert len(parent) == 1
    assert children, "model-sign verifies what it signed in a child process; the log must show it"
    for _pid, argv, environ in children:
        assert password not in " ".join(argv), argv
        assert password.encode() not in environ, argv
    # and the signature it wrote holds: the library's own CLI verifies the model with the public key
    subprocess.run([sys.executable, "-m", "model_signing", "verify", "key", str(model), "--signature",
                    str(model / "model.sig"), "--public_key", str(tmp_path / "key.pub")], check=True,
                   capture_output=True)
