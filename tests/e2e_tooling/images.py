"""Test images for the rollout end to end, derived from the published model server image on the lab's build host.

Each is ``FROM <published reference>`` plus a label naming the variant (so it has its own digest) and, for the faulty
ones, tests/e2e_tooling/autoglm_fault.py on the image's PYTHONPATH as the entry point with the fault in the image's
environment. The product image has no fault switch: the faults exist only in these test images. They are built with
the build host's Docker engine and pushed to the lab registry with the credentials that host is logged in with (the
registry's fleet user, which pushes the published image too); the digest the registry gives is what a rollout pins.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

FAULT = Path(__file__).with_name("autoglm_fault.py")

VARIANTS = {
    # A new version that serves like the old one: only its digest differs.
    "good": {},
    # Half of its generation requests answer 500 (the guides' rollback gate: 5xx above 5 %).
    "bad500": {"AUTOGLM_FAULT_500_RATIO": "0.5"},
    # Every generation request 1.5 s late (the guides' halt gate: P95 above 1 s).
    "slow": {"AUTOGLM_FAULT_DELAY_SECONDS": "1.5"},
}


def dockerfile(base, variant):
    lines = ["FROM %s" % base, "LABEL ai.autoglm.test.variant=%s" % variant]
    env = VARIANTS[variant]
    if env:
        lines += ["COPY autoglm_fault.py /opt/autoglm/app/autoglm_fault.py"]
        lines += ["ENV %s=%s" % item for item in sorted(env.items())]
        lines += ['ENTRYPOINT ["python", "-m", "autoglm_fault"]']
    return "\n".join(lines) + "\n"


def context(base, variant):
    """The build context as a tar archive: the Dockerfile and the fault module."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        files = (("Dockerfile", dockerfile(base, variant).encode()), ("autoglm_fault.py", FAULT.read_bytes()))
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_and_push(build_host, base, repository, variant):
    """Build the variant on the build host, push it, return its digest (sha256:...)."""
    tag = "%s:e2e-%s" % (repository, variant)
    subprocess.run(["docker", "exec", "-i", "-e", "DOCKER_BUILDKIT=0", build_host, "docker", "build", "-q",
                    "-t", tag, "-"], input=context(base, variant), check=True, capture_output=True)
    subprocess.run(["docker", "exec", build_host, "docker", "push", "-q", tag], check=True, capture_output=True)
    digests = subprocess.run(
        ["docker", "exec", build_host, "docker", "image", "inspect", "-f",
         "{{range .RepoDigests}}{{println .}}{{end}}", tag], check=True, capture_output=True, text=True).stdout.split()
    pinned = [d.split("@", 1)[1] for d in digests if d.startswith(repository + "@")]
    if len(pinned) != 1:
        raise AssertionError("%s has no single repo digest for %s: %s" % (tag, repository, digests))
    return pinned[0]
