"""model_image: after a build, the image's CUDA label is checked against torch.version.cuda inside it, and a
mismatch stops the publish (the script itself: tests/unit/roles/model_image/files/test_check_image_cuda.py).

The role runs for real (ansible-playbook, the real Docker engine, source: build): a context archive whose Dockerfile
sets the label from the CUDA_VERSION build argument as containers/model-server/Dockerfile does, over a stand-in
`torch` package (a real Python package reporting the CUDA version of the TORCH_CUDA build argument) on
autoglm/lab-host:latest (Debian 12 with Python 3.11). A mismatched build fails at the check with the script's
message; push.yml never starts and nothing is recorded. A matching build passes the check and reaches the push
(to a registry address where nothing listens, so the push itself fails: what this test needs is the order).
The images it builds are removed at the end. On the shared development machine run it under the heavy lock:
    flock /tmp/autoglm-heavy.lock .venv/bin/pytest tests/integration/roles/test_model_image_cuda_check.py
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

BASE = "autoglm/lab-host:latest"


# ----------------------------------------------------------------------------------------- the role, for real
DOCKERFILE = """\
ARG BASE_IMAGE=%s
FROM ${BASE_IMAGE}
ARG VARIANT=cuda
ARG CUDA_VERSION=none
# The stand-in torch reports the CUDA version of this build argument.
ARG TORCH_CUDA=none
COPY faketorch/ /opt/faketorch/
COPY python /usr/local/bin/python
ENV PYTHONPATH=/opt/faketorch TORCH_FAKE_CUDA=${TORCH_CUDA}
LABEL ai.autoglm.cuda.version="${CUDA_VERSION}" ai.autoglm.variant="${VARIANT}" ai.autoglm.test=cuda-check
""" % BASE
FILES = {
    "Dockerfile": (DOCKERFILE, 0o644),
    "python": ('#!/bin/sh\nexec python3 "$@"\n', 0o755),
    "faketorch/torch/__init__.py": ('from . import version\n__version__ = "2.10.0+fake"\n', 0o644),
    "faketorch/torch/version.py": (
        'import os\n_cuda = os.environ.get("TORCH_FAKE_CUDA", "none")\ncuda = None if _cuda == "none" else _cuda\n',
        0o644),
}


def _context_archive(path):
    with tarfile.open(path, "w") as tar:
        for name, (text, mode) in FILES.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return path


def docker(*args, check_rc=True):
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300, check=False)
    if check_rc:
        assert done.returncode == 0, "docker %s: %s" % (" ".join(args), done.stderr)
    return done


@pytest.fixture(scope="module")
def engine():
    docker("version", "--format", "{{.Server.Version}}")  # fails (not skips) when no engine is reachable
    docker("image", "inspect", BASE, "--format", "{{.Id}}")
    repository = "localhost:5999/autoglm-test/cuda-check-%d" % os.getpid()
    yield repository
    for tag in ("mismatch", "match", "recorded"):
        docker("image", "rm", "--force", "%s:%s" % (repository, tag), check_rc=False)


def _publish(ansible_playbook, tmp_path, repository, tag, build_args, record=None):
    root = tmp_path / "runtime"
    (root / "state").mkdir(parents=True, exist_ok=True)
    if record is not None:
        (root / "state" / "model_image.json").write_text(json.dumps(record))
    playbook = tmp_path / "publish.yml"
    playbook.write_text(
        "- name: Publish\n  hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  roles:\n    - role: autoglm.fleet.model_image\n"
    )
    extra = {
        "model_image_source": "build",
        "model_image_context_archive": str(_context_archive(tmp_path / "context.tar")),
        "model_image_repository": repository,
        "model_image_tag": tag,
        "model_image_build_args": build_args,
        "model_image_work_dir": str(tmp_path / "build"),
        "runtime_root_dir": str(root),
        "runtime_python_interpreter": sys.executable,
    }
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    result = ansible_playbook(playbook, "-i", "localhost,", "-e", "@%s" % (tmp_path / "extra.json"), "-v",
                              timeout=600)
    return result, root / "state" / "model_image.json"


PUSH_TASK = "TASK [autoglm.fleet.model_image : Push "


def dangling_volumes():
    """Anonymous volumes no container refers to. The base image declares VOLUME /var/lib/docker, so the check's
    throwaway container gets one, which its removal must take along (keep_volumes: false; 3 were left per run)."""
    return set(docker("volume", "ls", "-q", "-f", "dangling=true").stdout.split())


def test_a_mismatched_label_stops_the_publish(ansible_playbook, tmp_path, engine):
    volumes = dangling_volumes()
    result, record = _publish(ansible_playbook, tmp_path, engine, "mismatch",
                              {"CUDA_VERSION": "12.8", "TORCH_CUDA": "13.0"})
    out = result.stdout
    assert result.returncode != 0, out
    assert ("TASK [autoglm.fleet.model_image : Stop the publish when the image's CUDA label and its torch disagree]"
            in out)
    assert ("%s:mismatch was built but is not pushed: the image is labelled ai.autoglm.cuda.version=12.8 but its "
            "torch 2.10.0+fake is built for CUDA 13.0" % engine) in out
    assert PUSH_TASK not in out  # push.yml never started
    assert not record.exists()
    # the image was built (the label is what the build arguments said) and the check left no container behind
    labels = json.loads(docker("image", "inspect", "%s:mismatch" % engine, "--format",
                               "{{json .Config.Labels}}").stdout)
    assert labels["ai.autoglm.cuda.version"] == "12.8"
    assert docker("ps", "-a", "--filter", "name=autoglm-cuda-check-mismatch", "-q").stdout.strip() == ""
    assert dangling_volumes() - volumes == set()


def test_a_matching_label_reaches_the_push(ansible_playbook, tmp_path, engine):
    volumes = dangling_volumes()
    result, record = _publish(ansible_playbook, tmp_path, engine, "match",
                              {"CUDA_VERSION": "13.0", "TORCH_CUDA": "13.0"})
    out = result.stdout
    assert "ai.autoglm.cuda.version=13.0 matches the image's torch 2.10.0+fake (built for CUDA 13.0)" in out
    # the check let it through: the push runs, and fails only because nothing listens at localhost:5999
    assert PUSH_TASK in out, out
    assert result.returncode != 0 and not record.exists()
    assert docker("ps", "-a", "--filter", "name=autoglm-cuda-check-match", "-q").stdout.strip() == ""
    assert dangling_volumes() - volumes == set()


def test_the_image_the_last_publish_recorded_is_not_run_again(ansible_playbook, tmp_path, engine):
    """The check runs torch in the image (seconds of CPU): an unchanged re-run skips it for the image whose ID and
    label the last publish's record names (written only after the check passed), and only for that image."""
    args = {"CUDA_VERSION": "12.8", "TORCH_CUDA": "13.0"}  # a mismatch, so a skipped check shows
    other = {"image_id": "sha256:" + "0" * 64, "cuda_version": "12.8", "digest": "sha256:" + "1" * 64}
    result = _publish(ansible_playbook, tmp_path, engine, "recorded", args, record=other)[0]
    assert result.returncode != 0
    assert "was built but is not pushed: the image is labelled ai.autoglm.cuda.version=12.8" in result.stdout
    image_id = docker("image", "inspect", "%s:recorded" % engine, "--format", "{{.Id}}").stdout.strip()
    mine = dict(other, image_id=image_id)
    result = _publish(ansible_playbook, tmp_path, engine, "recorded", args, record=mine)[0]
    out = result.stdout
    assert "was checked against its torch when it was published" in out, out
    assert PUSH_TASK in out, out  # let through to the push (which fails: nothing listens at localhost:5999)
