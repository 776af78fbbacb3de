"""playbooks/bundle.yml (the bundle role) for real, on this machine, with nothing leaving loopback.

Real parts: ansible-playbook; a Debian-style archive (tests/support/apt_archive.py: dpkg-deb packages named as the
roles' Debian 12 packages, an InRelease signed by a test key) served on 127.0.0.1 and read by apt; the Docker
engine (two tiny images made with `docker import`, exported with `docker save`); pip downloading the runtime's
wheels from a PEP 503 index of the set-up's wheelhouse on 127.0.0.1; model-sign and model_fetch for the weights;
bundle_seal's signature, checked here with module_utils/_bundle_manifest.verify, the code bundle_verify runs.

1. a first build makes the whole bundle: the closure (with a dependency no role names, the driver at the pinned
   branch where a newer one is offered), both images by id, the wheelhouse, the signed weights, a manifest that
   verifies with the operator's public key and records the versions
2. a second build with nothing changed changes nothing (the recap) and keeps the manifest's bytes
3. files the build does not make (an older model revision, an image no longer carried) go before sealing, so
   the manifest (which never listed them) stays as it was and verifies
4. bad input is refused with every failure named, before anything is written
4b. the operators' CLI: `autoglm-fleet bundle build` (nothing changed), `bundle verify` (the report line, exit 0; a
   damaged copy exits 1 naming the file; bad options exit 2)

The site side, on a lab-host container on an internal Docker network (no route out) whose apt is also pointed at
a trap proxy on that network that logs every connection:
5. site.yml with a tampered bundle is refused on the controller, naming the file, before the host changes
6. site.yml's bundle plays (--tags bundle: they run with any tags) leave apt on the host with the bundle's
   repository and nothing else: the roles' packages install from it at the bundle's versions, a package the
   bundle lacks is not found, and the trap logs nothing (it logs the host's own sources before); a second run
   changes nothing
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))
from ansible_collections.autoglm.fleet.plugins.module_utils import _bundle_manifest  # noqa: E402
from ansible_collections.autoglm.fleet.plugins.module_utils._image_archive import read_archive  # noqa: E402
from support.apt_archive import Served, make_world, stop_agents  # noqa: E402

WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
MODEL_ID, REVISION = "test-org/tiny", "r1"
IMAGES = {"model": "autoglm-bundle-test/model-server:1", "registry": "autoglm-bundle-test/registry:1"}

# The roles' Debian 12 packages (roles/bundle/vars/Debian_12.yml), as fakes; docker.io needs containerd (no role
# names it), and a newer driver branch is offered beside the pinned one.
CUDA = "11.8.89~11.8.0-5~deb12u1"
PACKAGES = [
    ("python3-apt", "2.6.0", None), ("python3-venv", "3.11.2-1+b1", None), ("python3-packaging", "23.0-1", None),
    ("docker.io", "20.10.24+dfsg1-1+b3", "containerd (>= 1.6)"), ("containerd", "1.6.20~ds1-1+b1", None),
    ("nginx", "1.22.1-9", None), ("prometheus", "2.42.0+ds-5+b5", None),
    ("prometheus-blackbox-exporter", "0.23.0-1+b5", None), ("prometheus-node-exporter", "1.5.0-1+b6", None),
    ("nvidia-driver", "535.216.01-1~deb12u1", "nvidia-kernel-dkms (= 535.216.01-1~deb12u1)"),
    ("nvidia-driver", "550.163.01-2", "nvidia-kernel-dkms (= 550.163.01-2)"),
    ("nvidia-kernel-dkms", "535.216.01-1~deb12u1", None), ("nvidia-kernel-dkms", "550.163.01-2", None),
    ("nvidia-smi", "535.216.01-1~deb12u1", None), ("nvidia-smi", "550.163.01-2", None),
    ("nvidia-persistenced", "535.171.04-1", None), ("initramfs-tools", "0.142+deb12u1", None),
    ("nvidia-cuda-toolkit", CUDA, None), ("linux-headers-amd64", "6.1.158-1", None),
]


def run(*argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def recap(proc):
    """{'ok': n, 'changed': n, ...} of localhost's PLAY RECAP line; fails the test on a missing recap."""
    match = re.search(r"^localhost\s+:\s+(.*)$", proc.stdout, re.M)
    assert match, "no PLAY RECAP in:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def tiny_image(name, payload):
    """A one-file image made with docker import (no registry: nothing to pull)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("payload.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    subprocess.run(["docker", "import", "-", name], input=buf.getvalue(), check=True, capture_output=True)
    return run("docker", "image", "inspect", "-f", "{{.Id}}", name).stdout.strip()


def pep503_index(root, wheels):
    """A simple index (PEP 503) of the wheels in ``wheels``, written under ``root``."""
    files = root / "files"
    files.mkdir(parents=True)
    projects = {}
    for wheel in sorted(wheels.glob("*.whl")):
        (files / wheel.name).write_bytes(wheel.read_bytes())
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(project, []).append(wheel.name)
    for project, names in projects.items():
        (root / "simple" / project).mkdir(parents=True)
        links = "".join('<a href="../../files/%s">%s</a>\n' % (n, n) for n in names)
        (root / "simple" / project / "index.html").write_text("<html><body>\n%s</body></html>\n" % links)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not (WHEELHOUSE / "requirements.txt").is_file():
        pytest.fail("the runtime wheelhouse is missing at %s: run make setup first" % WHEELHOUSE)
    tmp = tmp_path_factory.mktemp("bundle")
    apt = make_world(tmp / "apt", codename="bookworm", packages=PACKAGES)
    pep503_index(tmp / "index", WHEELHOUSE)
    index = Served(tmp / "index")
    ids = {key: tiny_image(name, ("%s\n" % key).encode()) for key, name in IMAGES.items()}
    py = sys.executable
    run(py, str(ROOT / "scripts/model-sign"), "keygen", "--out", str(tmp / "bundle"))
    run(py, str(ROOT / "scripts/model-sign"), "keygen", "--out", str(tmp / "model"))
    model = tmp / "source" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "tiny", "hidden_size": 8}) + "\n")
    (model / "model.safetensors").write_bytes(os.urandom(4096))
    run(py, str(ROOT / "scripts/model-sign"), "sign", "--private-key", str(tmp / "model.key"),
        "--model-id", MODEL_ID, "--revision", REVISION, str(model))
    extra = {
        "bundle_dir": str(tmp / "out"),
        "bundle_signing_key": str(tmp / "bundle.key"),
        "bundle_cache_dir": str(tmp / "cache"),
        "bundle_apt_sources": [{"uris": [apt["url"]], "suites": ["bookworm"], "components": ["main"],
                                "signed_by": str(apt["keyring"])}],
        "bundle_model_image": IMAGES["model"],
        "bundle_registry_image": IMAGES["registry"],
        "bundle_model_id": MODEL_ID,
        "bundle_model_revision": REVISION,
        "bundle_model_sources": [{"url": "file://%s" % model, "type": "file"}],
        "bundle_model_public_key": (tmp / "model.pub").read_text(),
        "runtime_pip_index_url": index.url + "/simple/",
    }
    (tmp / "extra.json").write_text(json.dumps(extra))
    yield {"tmp": tmp, "extra": tmp / "extra.json", "out": tmp / "out", "ids": ids, "pub": tmp / "bundle.pub"}
    index.close()
    apt["server"].close()
    stop_agents(apt)
    subprocess.run(["docker", "image", "rm", *IMAGES.values()], capture_output=True, check=False)


def build(ansible_playbook, world, *args):
    return ansible_playbook(ROOT / "playbooks" / "bundle.yml", "-e", "@%s" % world["extra"], *args, timeout=600)


def test_1_a_first_build_makes_the_whole_signed_bundle(world, ansible_playbook):
    proc = build(ansible_playbook, world)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert recap(proc)["changed"] > 0
    out = world["out"]
    manifest = _bundle_manifest.verify(str(out), str(world["pub"]))
    files = manifest["manifest"]["files"]
    pool = sorted(p.split("/")[-1] for p in files if p.startswith("apt/pool/"))
    names = {n.split("_")[0] for n in pool}
    assert {"docker.io", "containerd", "nginx", "prometheus", "python3-venv", "nvidia-driver", "nvidia-kernel-dkms",
            "nvidia-cuda-toolkit", "linux-headers-amd64", "initramfs-tools"} <= names
    assert not [n for n in pool if "550" in n], "the driver must come from the pinned branch 535: %s" % pool
    assert any(n.startswith("nvidia-cuda-toolkit_11.8.89") for n in pool)
    contents = json.loads((out / "manifest.json").read_text())["contents"]
    images = {i["name"]: i for i in contents["images"]}
    assert images["model-server"]["id"] == world["ids"]["model"]
    assert images["registry"]["id"] == world["ids"]["registry"]
    for name, key in (("model-server", "model"), ("registry", "registry")):
        assert read_archive(str(out / "images" / ("%s.tar" % name)))["id"] == world["ids"][key]
    assert contents["apt"]["versions"]["nvidia-driver"].startswith("535.")
    assert contents["model"] == {"id": MODEL_ID, "revision": REVISION, "path": "models/%s/%s" % (MODEL_ID, REVISION),
                                 "signature": "model.sig"}
    assert (out / "models" / MODEL_ID / REVISION / "model.sig").is_file()
    wheels = [p for p in files if p.startswith("wheelhouse/") and p.endswith(".whl")]
    assert any(w.startswith("wheelhouse/model_signing-") for w in wheels), wheels
    assert "bundle %s at %s" % (json.loads((out / "manifest.json").read_text())["id"], out) in proc.stdout


def test_2_a_second_build_with_nothing_changed_changes_nothing(world, ansible_playbook):
    before = (world["out"] / "manifest.json").read_bytes(), (world["out"] / "manifest.sig").read_bytes()
    proc = build(ansible_playbook, world)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert recap(proc)["changed"] == 0, proc.stdout[-6000:]
    assert ((world["out"] / "manifest.json").read_bytes(), (world["out"] / "manifest.sig").read_bytes()) == before


def test_3_files_the_build_does_not_make_go_before_sealing(world, ansible_playbook):
    out = world["out"]
    old = out / "models" / MODEL_ID / "r0"
    old.mkdir()
    (old / "model.safetensors").write_bytes(b"old")
    (out / "images" / "old-server.tar").write_bytes(b"old")
    before = (out / "manifest.json").read_bytes()
    proc = build(ansible_playbook, world)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert not old.exists() and not (out / "images" / "old-server.tar").exists()
    # removed before sealing: the manifest lists what it listed and still verifies
    _bundle_manifest.verify(str(out), str(world["pub"]))
    assert json.loads((out / "manifest.json").read_bytes())["files"] == json.loads(before)["files"]


def test_4_bad_input_is_refused_before_anything_is_written(world, ansible_playbook, tmp_path):
    proc = build(ansible_playbook, world, "-e", "bundle_dir=relative/out", "-e", "bundle_signing_key=%s" % (
        tmp_path / "missing.key"), "-e", "bundle_model_image=autoglm-bundle-test/absent:1")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "bundle build refused" in text
    for needle in ("bundle_dir must be an absolute path", "bundle_signing_key '%s' is not a file" % (
            tmp_path / "missing.key"), "bundle_model_image 'autoglm-bundle-test/absent:1' is not an image"):
        assert needle in text, text[-4000:]
    assert not (ROOT / "relative").exists()
    assert recap(proc)["changed"] == 0


def fleet(*args):
    """The operators' CLI (cli/autoglm_fleet) as an operator runs it, through ansible-runner."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "cli"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run([sys.executable, "-m", "autoglm_fleet", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_4b_autoglm_fleet_bundle_builds_and_verifies(world, tmp_path):
    # build: the same playbook through the CLI, nothing changed since test 3 (its options become extra vars)
    extra = json.loads(world["extra"].read_text())
    built = fleet("bundle", "build", "-i", "localhost,", "-e", "@%s" % world["extra"], "--dir", extra["bundle_dir"],
                  "--signing-key", extra["bundle_signing_key"])
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-2000:]
    assert re.search(r"^localhost\s+ok\s+\d+\s+0\s+0\s", built.stdout, re.M), built.stdout[-4000:]
    assert "bundle build succeeded: 1 host(s)" in built.stdout
    # verify: the report line (id, files, what it carries), exit 0
    manifest_id = json.loads((world["out"] / "manifest.json").read_text())["id"]
    ok = fleet("bundle", "verify", str(world["out"]), "--public-key", str(world["pub"]), "-i", "localhost,")
    assert ok.returncode == 0, ok.stdout[-4000:] + ok.stderr[-2000:]
    assert "bundle %s verified: " % manifest_id in ok.stdout and "model-server, registry" in ok.stdout, ok.stdout
    # a damaged copy: exit 1, the file named
    damaged = tmp_path / "damaged"
    shutil.copytree(world["out"], damaged)
    wheel = sorted((damaged / "wheelhouse").glob("*.whl"))[0]
    wheel.write_bytes(wheel.read_bytes()[:-1] + b"!")
    bad = fleet("bundle", "verify", str(damaged), "--public-key", str(world["pub"]), "-i", "localhost,")
    assert bad.returncode == 1, bad.stdout[-4000:] + bad.stderr[-2000:]
    assert "%s was tampered with or damaged" % ("wheelhouse/" + wheel.name) in bad.stdout, bad.stdout[-4000:]
    assert "bundle verify FAILED" in bad.stdout
    # usage errors: exit 2 before anything runs
    for args, needle in (((str(tmp_path), "--public-key", str(world["pub"])), "is not a bundle (no manifest.json"),
                         ((str(world["out"]), "--public-key", str(tmp_path / "none.pub")), "is not a file"),
                         ((str(world["out"]), "--public-key", str(world["pub"]), "--base", str(world["out"])),
                          "--base and --apply-dir go together")):
        usage = fleet("bundle", "verify", *args)
        assert usage.returncode == 2 and needle in usage.stderr, (args, usage.stderr)


# ---- The site side ----------------------------------------------------------------------------------------------

SITE, TRAP, NET = "autoglm-bundle-site", "autoglm-bundle-trap", "autoglm-bundle-internal"
TRAP_LOG = "/tmp/trap.log"
# A listener that logs each connection's first line and closes it: what any task that tried the network would reach.
TRAP_PROGRAM = r"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 3128)); s.listen(16)
while True:
    c, a = s.accept(); c.settimeout(2)
    try: line = c.recv(512).split(b"\r\n")[0].decode("latin-1")
    except OSError: line = "(nothing)"
    open("/tmp/trap.log", "a").write("%s %s\n" % (a[0], line)); c.close()
"""


def sh(container, script, check=True):
    return subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True,
                          check=check)


@pytest.fixture(scope="module")
def site(world):
    """A lab host and the trap on an --internal network; the host's apt goes through the trap for any source."""
    for name in (SITE, TRAP):
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
    subprocess.run(["docker", "network", "rm", NET], capture_output=True, check=False)
    run("docker", "network", "create", "--internal", NET)
    try:
        run("docker", "run", "-d", "--name", TRAP, "--network", NET, "autoglm/lab-host:latest",
            "python3", "-c", TRAP_PROGRAM)
        run("docker", "run", "-d", "--name", SITE, "--network", NET, "autoglm/lab-host:latest", "sleep", "infinity")
        subprocess.run(["docker", "exec", "-i", SITE, "sh", "-c", "cat > /etc/apt/apt.conf.d/01trap-proxy"],
                       input='Acquire::http::Proxy "http://%s:3128";\nAcquire::https::Proxy "http://%s:3128";\n'
                       % (TRAP, TRAP), text=True, check=True)
        for _attempt in range(50):
            if sh(SITE, "python3 -c 'import socket; socket.create_connection((\"%s\", 3128), 1)'" % TRAP,
                  check=False).returncode == 0:
                break
            time.sleep(0.2)
        sh(TRAP, ": > %s" % TRAP_LOG)
        inventory = world["tmp"] / "site-hosts"
        inventory.write_text("[gpu_hosts]\n%s ansible_connection=community.docker.docker "
                             "ansible_python_interpreter=/usr/bin/python3\n" % SITE)
        yield {"inventory": inventory}
    finally:
        for name in (SITE, TRAP):
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", NET], capture_output=True, check=False)


def site_run(ansible_playbook, world, site, bundle, *args):
    return ansible_playbook(ROOT / "site.yml", "-i", str(site["inventory"]), "-e", "fleet_bundle=%s" % bundle,
                            "-e", "fleet_bundle_public_key=%s" % world["pub"], *args, timeout=600)


def host_recap(proc):
    match = re.search(r"^%s\s+:\s+(.*)$" % SITE, proc.stdout, re.M)
    assert match, "no PLAY RECAP for %s in:\n%s\n%s" % (SITE, proc.stdout[-3000:], proc.stderr[-3000:])
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_5_a_tampered_bundle_is_refused_naming_the_file_before_the_host_changes(
        world, site, ansible_playbook, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(world["out"], tampered)
    deb = sorted((tampered / "apt" / "pool").rglob("nginx_*.deb"))[0]
    with open(deb, "ab") as f:
        f.write(b"\0")
    proc = site_run(ansible_playbook, world, site, tampered, "--tags", "bundle")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-4000:]
    assert "bundle %s refused" % tampered in text, text[-4000:]
    assert deb.name in text, text[-4000:]
    assert host_recap(proc)["changed"] == 0
    assert sh(SITE, "test -e /etc/apt/apt.conf.d/00autoglm-bundle", check=False).returncode == 1
    assert sh(SITE, "test -e /opt/autoglm/bundle", check=False).returncode == 1


def test_6_apt_on_the_host_reads_the_bundle_and_nothing_else(world, site, ansible_playbook):
    # the trap works: the host's own sources (deb.debian.org) go to it, and fail
    sh(SITE, "apt-get update", check=False)
    assert "deb.debian.org" in sh(TRAP, "cat %s" % TRAP_LOG).stdout
    sh(TRAP, ": > %s" % TRAP_LOG)

    proc = site_run(ansible_playbook, world, site, world["out"], "--tags", "bundle")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert host_recap(proc)["changed"] > 0
    versions = json.loads((world["out"] / "manifest.json").read_text())["contents"]["apt"]["versions"]
    # (the lab-host image carries Debian's engine already; these three it lacks)
    sh(SITE, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx prometheus python3-venv")
    installed = sh(SITE, "dpkg-query -W -f='${Package} ${Version}\\n' nginx prometheus python3-venv")
    assert len(installed.stdout.strip().splitlines()) == 3, installed.stdout
    for line in installed.stdout.strip().splitlines():
        name, version = line.split()
        assert versions[name] == version, (name, version, versions.get(name))
    missing = sh(SITE, "apt-get install -y -q hello", check=False)
    assert missing.returncode != 0 and "Unable to locate package hello" in missing.stderr, missing.stderr
    policy = sh(SITE, "apt-cache policy").stdout
    assert "file:/opt/autoglm/bundle/apt ./" in policy and "deb.debian.org" not in policy, policy
    assert sh(TRAP, "cat %s" % TRAP_LOG).stdout == "", "a task tried the network"

    again = site_run(ansible_playbook, world, site, world["out"], "--tags", "bundle")
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
    assert host_recap(again)["changed"] == 0, again.stdout[-6000:]
    assert sh(TRAP, "cat %s" % TRAP_LOG).stdout == ""
