"""module_utils/_image_archive on docker-save archives: synthetic ones built here (layout as moby writes it), and, in
the integration tier, a real `docker save` whose thin copy `docker load` accepts where the base image is."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import uuid

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils import _image_archive as ia


def layer_tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def save_archive(path, layers, tags=("example/image:1",), drop=()):
    """A docker save archive of one image with these layers ({name: bytes} each); ``drop``: layer indexes left out."""
    blobs = [layer_tar(files) for files in layers]
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}},
                        sort_keys=True).encode()
    config_name = "blobs/sha256/" + hashlib.sha256(config).hexdigest()
    layer_names = ["blobs/sha256/" + d.split(":")[1] for d in diff_ids]
    with tarfile.open(path, "w:") as tar:
        add(tar, config_name, config)
        for i, (name, blob) in enumerate(zip(layer_names, blobs, strict=True)):
            if i not in drop:
                add(tar, name, blob)
        add(tar, "manifest.json", json.dumps([{"Config": config_name, "RepoTags": list(tags),
                                               "Layers": layer_names}]).encode())
    return "sha256:" + hashlib.sha256(config).hexdigest(), diff_ids


BASE = [{"etc/os": b"base\n"}, {"opt/lib": b"x" * 1000}]
APP = [*BASE, {"opt/app": b"app v2\n"}]


def test_read_gives_the_image_id_its_layers_and_their_chain(tmp_path):
    image_id, diff_ids = save_archive(tmp_path / "app.tar", APP)
    info = ia.read_archive(str(tmp_path / "app.tar"))
    assert info["id"] == image_id and info["diff_ids"] == diff_ids and info["repo_tags"] == ["example/image:1"]
    assert info["present_layers"] == [True, True, True]
    # The layer store's chain ids: the first is its diff id, each next the sha256 of "<chain below> <diff id>".
    second = "sha256:" + hashlib.sha256(("%s %s" % (diff_ids[0], diff_ids[1])).encode()).hexdigest()
    third = "sha256:" + hashlib.sha256(("%s %s" % (second, diff_ids[2])).encode()).hexdigest()
    assert info["chain_ids"] == [diff_ids[0], second, third]


def test_a_thin_archive_leaves_out_the_layers_the_base_image_has(tmp_path):
    save_archive(tmp_path / "base.tar", BASE)
    app_id, diff_ids = save_archive(tmp_path / "app.tar", APP)
    base = ia.read_archive(str(tmp_path / "base.tar"))
    out = ia.write_thin(str(tmp_path / "app.tar"), str(tmp_path / "thin.tar"), base["chain_ids"])
    assert out == {"id": app_id, "omitted": diff_ids[:2], "kept": diff_ids[2:]}
    thin = ia.read_archive(str(tmp_path / "thin.tar"))
    assert thin["id"] == app_id and thin["present_layers"] == [False, False, True]
    assert not list(tmp_path.glob("thin.tar.tmp-*"))


def test_the_same_layer_on_another_chain_is_kept(tmp_path):
    # The base's second layer over a different first layer is another chain: docker load would need its file.
    save_archive(tmp_path / "other.tar", [{"etc/os": b"other base\n"}, {"opt/lib": b"x" * 1000}])
    _app_id, diff_ids = save_archive(tmp_path / "app.tar", APP)
    other = ia.read_archive(str(tmp_path / "other.tar"))
    out = ia.write_thin(str(tmp_path / "app.tar"), str(tmp_path / "thin.tar"), other["chain_ids"])
    assert out["omitted"] == [] and out["kept"] == diff_ids


@pytest.mark.parametrize("case", ["two images", "not a tar", "no config", "layer count"])
def test_what_is_not_one_image_archive_is_refused_with_a_reason(tmp_path, case):
    path = tmp_path / "bad.tar"
    if case == "not a tar":
        path.write_bytes(b"not a tar at all" * 100)
        expect = "is not a docker save archive"
    else:
        with tarfile.open(path, "w:") as tar:
            if case == "two images":
                add(tar, "manifest.json", json.dumps([{"Config": "a", "Layers": []}, {"Config": "b", "Layers": []}])
                    .encode())
                expect = "must hold exactly one image"
            elif case == "no config":
                add(tar, "manifest.json", json.dumps([{"Config": "blobs/sha256/missing", "Layers": []}]).encode())
                expect = "has no blobs/sha256/missing"
            else:
                config = json.dumps({"rootfs": {"diff_ids": ["sha256:" + "0" * 64]}}).encode()
                add(tar, "config.json", config)
                add(tar, "manifest.json", json.dumps([{"Config": "config.json", "Layers": []}]).encode())
                expect = "names 0 layers, the config 1"
    with pytest.raises(ia.ImageArchiveError, match=expect):
        ia.read_archive(str(path))


def docker(*args, **kw):
    return subprocess.run(["docker", *args], check=True, capture_output=True, **kw)


@pytest.mark.integration
def test_docker_loads_a_thin_archive_where_the_base_image_is(tmp_path):
    """Real engine: a base image imported from a tar, an image built FROM it, saved, thinned against the base, the
    image removed, then the thin archive loaded: same id; without the base image the engine refuses it."""
    tag = "autoglm-test-thin-%s" % uuid.uuid4().hex[:8]
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "app.txt").write_text("app\n")
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM %s:base\nCOPY app.txt /opt/app.txt\n" % tag)
    try:
        docker("import", "-", "%s:base" % tag, input=layer_tar({"etc/os-release": b"ID=test\n"}))
        docker("build", "-q", "-t", "%s:app" % tag, str(tmp_path / "ctx"))
        docker("save", "-o", str(tmp_path / "base.tar"), "%s:base" % tag)
        docker("save", "-o", str(tmp_path / "app.tar"), "%s:app" % tag)
        base = ia.read_archive(str(tmp_path / "base.tar"))
        app = ia.read_archive(str(tmp_path / "app.tar"))
        out = ia.write_thin(str(tmp_path / "app.tar"), str(tmp_path / "thin.tar"), base["chain_ids"])
        assert out["omitted"] == base["diff_ids"] and len(out["kept"]) == 1
        docker("rmi", "%s:app" % tag)
        docker("load", "-i", str(tmp_path / "thin.tar"))
        got = docker("image", "inspect", "-f", "{{.Id}}", "%s:app" % tag, text=True).stdout.strip()
        assert got == app["id"]
        # Without the base image the thin archive cannot load.
        docker("rmi", "%s:app" % tag, "%s:base" % tag)
        refused = subprocess.run(["docker", "load", "-i", str(tmp_path / "thin.tar")], capture_output=True, text=True,
                                 check=False)
        assert refused.returncode != 0, refused.stdout
    finally:
        subprocess.run(["docker", "rmi", "-f", "%s:app" % tag, "%s:base" % tag], capture_output=True, check=False)
