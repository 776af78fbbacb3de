"""Update bundles on real files in tmp dirs, signed and verified with real EC keys: made from a full bundle against
the site's current one, applied onto it, every refusal naming what failed."""

import json
import os
import re

import pytest
from ansible_collections.autoglm.fleet.plugins.module_utils import _bundle_manifest as bm
from ansible_collections.autoglm.fleet.plugins.module_utils import _bundle_update as bu

from .test_bundle_manifest import keypair

CREATED = "2026-12-05T10:00:00Z"
BASE = {
    "apt/Packages": b"Package: a\n",
    "apt/pool/a_1_all.deb": os.urandom(4000),
    "images/model-server.tar": os.urandom(30000),
    "images/registry.tar": os.urandom(20000),
    "wheelhouse/requirements.txt": b"x==1\n",
    "wheelhouse/x-1-py3-none-any.whl": os.urandom(2000),
    "models/org/m/r1/model.safetensors": os.urandom(10000),
    "models/org/m/r1/model.sig": b"sig-r1",
}


def refused(text):
    return pytest.raises(bm.BundleError, match=re.escape(text))


def write_tree(root, files):
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    priv, pub = keypair(root, "operator")
    other_priv, other_pub = keypair(root, "other")
    return {"priv": priv, "pub": pub, "other_priv": other_priv, "other_pub": other_pub}


@pytest.fixture
def world(tmp_path, keys):
    """The site's current bundle (r1) and the next full bundle: a new model server image and model revision r2."""
    base = write_tree(tmp_path / "base", BASE)
    bm.seal(str(base), {"model": {"revision": "r1"}}, keys["priv"], created=CREATED)
    nxt = dict(BASE)
    nxt["images/model-server.tar"] = os.urandom(30000)
    del nxt["models/org/m/r1/model.safetensors"], nxt["models/org/m/r1/model.sig"]
    nxt["models/org/m/r2/model.safetensors"] = os.urandom(10000)
    nxt["models/org/m/r2/model.sig"] = b"sig-r2"
    full = write_tree(tmp_path / "full", nxt)
    bm.seal(str(full), {"model": {"revision": "r2"}}, keys["priv"], created=CREATED)
    return {"base": base, "full": full, "update": tmp_path / "update", "site": tmp_path / "site" / "current",
            "next": nxt, "tmp": tmp_path}


def make(world, keys, **kw):
    return bu.make(str(world["full"]), str(world["base"]), str(world["update"]), keys["priv"], created=CREATED, **kw)


def test_an_update_ships_only_what_changed_and_names_its_base(world, keys):
    out = make(world, keys)
    assert out["changed"] is True
    carried = sorted(bm.list_tree(str(world["update"])))
    assert carried == ["images/model-server.tar", "models/org/m/r2/model.safetensors", "models/org/m/r2/model.sig"]
    manifest = json.loads((world["update"] / "manifest.json").read_text())
    assert manifest["kind"] == "update"
    base_sha = bm.read_verified(str(world["base"]), keys["pub"])[1]
    assert manifest["base"] == {"id": json.loads((world["base"] / "manifest.json").read_text())["id"],
                                "manifest_sha256": base_sha}
    assert manifest["files"]["images/registry.tar"]["in"] == "base"
    assert "models/org/m/r1/model.sig" not in manifest["files"]
    assert manifest["shipped"] == {"files": 3, "bytes": 30000 + 10000 + 6}
    assert out["full"]["files"] == len(world["next"])
    assert manifest["contents"] == {"model": {"revision": "r2"}}


def test_making_it_again_changes_nothing(world, keys):
    make(world, keys)
    before = (world["update"] / "manifest.json").read_bytes(), (world["update"] / "manifest.sig").read_bytes()
    assert make(world, keys)["changed"] is False
    assert ((world["update"] / "manifest.json").read_bytes(), (world["update"] / "manifest.sig").read_bytes()) == before


def test_make_check_mode_writes_nothing(world, keys):
    assert make(world, keys, check_mode=True)["changed"] is True
    assert not world["update"].exists()


def test_make_removes_what_an_older_update_shipped(world, keys):
    write_tree(world["update"], {"images/old.tar": b"old"})
    make(world, keys)
    assert not (world["update"] / "images" / "old.tar").exists()


def test_make_from_the_base_manifest_alone(world, keys, tmp_path):
    only = tmp_path / "base-manifest"
    only.mkdir()
    for name in ("manifest.json", "manifest.sig"):
        (only / name).write_bytes((world["base"] / name).read_bytes())
    bu.make(str(world["full"]), str(only), str(world["update"]), keys["priv"], created=CREATED)
    assert json.loads((world["update"] / "manifest.json").read_text())["base"]["manifest_sha256"] == \
        bm.read_verified(str(world["base"]), keys["pub"])[1]


def test_make_refuses_a_base_signed_with_another_key(world, keys):
    bm.seal(str(world["base"]), {"model": {"revision": "r1"}}, keys["other_priv"], created=CREATED)
    with refused("the base bundle at %s: manifest.sig does not verify" % world["base"]):
        make(world, keys)


def test_applied_the_site_holds_the_next_bundle_whole_and_it_verifies(world, keys):
    make(world, keys)
    out = bu.apply(str(world["update"]), str(world["base"]), str(world["site"]), keys["pub"])
    assert out["changed"] is True
    assert sorted(bm.list_tree(str(world["site"]))) == sorted(world["next"])
    for rel, data in world["next"].items():
        assert (world["site"] / rel).read_bytes() == data
    verified = bm.verify(str(world["site"]), keys["pub"])
    assert verified["manifest"]["kind"] == "update"
    # hard links on one file system: the base's registry image is not copied
    site_ino, base_ino = (os.stat(world[k] / "images/registry.tar").st_ino for k in ("site", "base"))
    assert site_ino == base_ino
    assert bu.apply(str(world["update"]), str(world["base"]), str(world["site"]), keys["pub"])["changed"] is False
    assert not [p for p in os.listdir(world["site"].parent) if p != "current"], "no leftover work directory"


def test_the_applied_bundle_is_the_base_of_the_next_update(world, keys, tmp_path):
    make(world, keys)
    bu.apply(str(world["update"]), str(world["base"]), str(world["site"]), keys["pub"])
    nxt = dict(world["next"], **{"wheelhouse/x-2-py3-none-any.whl": os.urandom(100)})
    full2 = write_tree(tmp_path / "full2", nxt)
    bm.seal(str(full2), {"model": {"revision": "r2"}, "pip": 2}, keys["priv"], created=CREATED)
    bu.make(str(full2), str(world["site"]), str(tmp_path / "update2"), keys["priv"], created=CREATED)
    shipped = sorted(bm.list_tree(str(tmp_path / "update2")))
    assert shipped == ["wheelhouse/requirements.txt", "wheelhouse/x-1-py3-none-any.whl",
                       "wheelhouse/x-2-py3-none-any.whl"], "the wheelhouse ships whole"
    bu.apply(str(tmp_path / "update2"), str(world["site"]), str(tmp_path / "site2"), keys["pub"])
    assert sorted(bm.list_tree(str(tmp_path / "site2"))) == sorted(nxt)


def test_check_mode_apply_writes_nothing(world, keys):
    make(world, keys)
    assert bu.apply(str(world["update"]), str(world["base"]), str(world["site"]), keys["pub"],
                    check_mode=True)["changed"] is True
    assert not world["site"].parent.exists()


def test_an_update_onto_another_bundle_is_refused(world, keys, tmp_path):
    make(world, keys)
    other = write_tree(tmp_path / "other", {"a.txt": b"a"})
    bm.seal(str(other), {}, keys["priv"], created=CREATED)
    with refused("this update was made against bundle"):
        bu.apply(str(world["update"]), str(other), str(world["site"]), keys["pub"])
    assert not world["site"].exists()


def test_a_tampered_file_of_the_update_is_named(world, keys):
    make(world, keys)
    with open(world["update"] / "models/org/m/r2/model.safetensors", "ab") as f:
        f.write(b"\0")
    with refused("models/org/m/r2/model.safetensors was tampered with or damaged"):
        bu.apply(str(world["update"]), str(world["base"]), str(world["site"]), keys["pub"])
    assert not world["site"].exists()
    assert not [p for p in os.listdir(world["tmp"]) if p.startswith(".current")]


def test_a_tampered_file_of_the_base_is_named(world, keys):
    make(world, keys)
    (world["base"] / "images/registry.tar").write_bytes(os.urandom(20000))
    with refused("images/registry.tar was tampered with or damaged"):
        bu.apply(str(world["update"]), str(world["base"]), str(world["site"]), keys["pub"])
    assert not world["site"].exists()


def test_an_extra_file_in_the_update_is_refused(world, keys):
    make(world, keys)
    (world["update"] / "images" / "extra.tar").write_bytes(b"x")
    with refused("images/extra.tar is in the update but its signed manifest does not ship it"):
        bu.apply(str(world["update"]), str(world["base"]), str(world["site"]), keys["pub"])


def test_an_update_used_as_a_whole_bundle_says_to_apply_it(world, keys):
    make(world, keys)
    with refused("this is an update bundle, which carries only what changed since bundle"):
        bm.verify(str(world["update"]), keys["pub"])


def test_a_full_bundle_is_not_applied_as_an_update(world, keys):
    with refused("is a full bundle, not an update"):
        bu.apply(str(world["full"]), str(world["base"]), str(world["site"]), keys["pub"])


def test_a_destination_that_is_not_a_bundle_is_never_replaced(world, keys):
    make(world, keys)
    write_tree(world["site"], {"notes.txt": b"mine"})
    with refused("exists and is not a bundle"):
        bu.apply(str(world["update"]), str(world["base"]), str(world["site"]), keys["pub"])
    assert (world["site"] / "notes.txt").read_bytes() == b"mine"


def test_an_update_signed_with_another_key_is_refused(world, keys):
    make(world, keys)
    with refused("manifest.sig does not verify with the public key"):
        bu.apply(str(world["update"]), str(world["base"]), str(world["site"]), keys["other_pub"])
