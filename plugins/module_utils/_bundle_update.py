# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Update bundles (private): make one on the connected side, apply one on the site.

An update bundle is a directory like a full bundle whose signed manifest (kind ``update``) lists every file the
site should hold, with ``"in": "base"`` on those the site's current bundle already holds (``_bundle_manifest.diff``:
a component - the apt indices, the wheelhouse, one model - ships whole when any of its files changed), and names that
bundle (``base``: its id and the SHA-256 of its manifest's bytes). Only the other files are in the directory.

``make`` writes one from a sealed full bundle and the site's current bundle (or just its ``manifest.json`` and
``manifest.sig``: the operator brings those two files out of the site), signed with the operator's key.

``apply`` checks the update's signature, that the site's current bundle is its base (by the SHA-256 of that
bundle's verified manifest), then assembles the new bundle in a directory beside the destination - hard links where
the file systems allow, copies where not - verifies the result as a whole (the signature, then every file, from the
update or from the base) and only then moves it into place. The assembled bundle is the site's new current bundle,
and the base of the next update.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from ansible_collections.autoglm.fleet.plugins.module_utils._bundle_manifest import (
    FORMAT,
    MANIFEST,
    SIGNATURE,
    BundleError,
    _public_half,
    diff,
    dump,
    file_digest,
    list_tree,
    manifest_id,
    read_verified,
    require_model_signing,
    sign,
    totals,
    verify,
)
from ansible_collections.autoglm.fleet.plugins.module_utils._fsutil import write_atomic


def shipped(files):
    """The paths of an update's file table that the update itself carries."""
    return sorted(p for p, e in files.items() if e.get("in") != "base")


def _link_or_copy(src, dst):
    """``dst`` becomes ``src``'s bytes: a hard link when the file system allows, else a copy (through a temp name)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=".partial-")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
        except BaseException:
            os.unlink(tmp)
            raise


def _prune_empty_dirs(root):
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        if dirpath != root and not dirnames and not filenames:
            os.rmdir(dirpath)


def _update_tree_matches(root, files):
    """Whether ``root`` holds exactly the files an update ships, with their sizes and SHA-256."""
    want = shipped(files)
    try:
        present = list_tree(root)
    except BundleError:
        return False
    if sorted(present) != want:
        return False
    return all(file_digest(os.path.join(root, p)) == (files[p]["size"], files[p]["sha256"]) for p in want)


def make(full_root, base_root, dest, private_key, password=None, created="", workers=4, check_mode=False):
    """Write (or keep) at ``dest`` the update from the bundle at ``base_root`` to the full bundle at ``full_root``.

    Both are verified with the public half of ``private_key`` first (the full bundle's every file; of the base, its
    signed manifest, which may be all that is there). Returns ``manifest``, ``changed``, ``manifest_sha256``,
    ``key_id``, ``shipped`` (files and bytes the update carries) and ``full`` (files and bytes of the full bundle).
    """
    require_model_signing()
    full_root, dest = os.path.abspath(full_root), os.path.abspath(dest)
    if dest == full_root or dest.startswith(full_root + os.sep) or full_root.startswith(dest + os.sep):
        raise BundleError("the update's directory %s must be outside the full bundle %s, and not hold it"
                          % (dest, full_root))
    public = _public_half(private_key, password)
    try:
        full = verify(full_root, public, workers)["manifest"]
        if full["kind"] != "full":
            raise BundleError("%s is an update bundle; make updates from a full bundle (playbooks/bundle.yml builds "
                              "one)" % full_root)
        try:
            base, base_sha, kid = read_verified(base_root, public)
        except BundleError as exc:
            raise BundleError("the base bundle at %s: %s" % (base_root, exc)) from exc
        files, base_ref = diff(full, base, base_sha)
        contents = full["contents"]
        ships = shipped(files)
        manifest = {"format": FORMAT, "id": manifest_id(files, contents), "kind": "update", "created": created,
                    "base": base_ref, "contents": contents, "files": files, "totals": totals(files),
                    "shipped": totals({p: files[p] for p in ships})}
        try:
            before, sha = read_verified(dest, public)[:2]
        except BundleError:
            before = None
        if (before is not None and before.get("base") == base_ref and before["files"] == files
                and before["contents"] == contents and _update_tree_matches(dest, files)):
            return {"manifest": before, "changed": False, "manifest_sha256": sha, "key_id": kid,
                    "shipped": before["shipped"], "full": full["totals"]}
        data = dump(manifest)
        if not check_mode:
            os.makedirs(dest, exist_ok=True)
            for name in (SIGNATURE, MANIFEST):  # a reader never finds the old manifest beside new files
                if os.path.lexists(os.path.join(dest, name)):
                    os.unlink(os.path.join(dest, name))
            present = list_tree(dest)
            for path in sorted(set(present) - set(ships)):
                os.unlink(os.path.join(dest, path))
            for path in ships:
                target = os.path.join(dest, path)
                if present.get(path) == files[path]["size"] and file_digest(target)[1] == files[path]["sha256"]:
                    continue
                if os.path.lexists(target):
                    os.unlink(target)
                _link_or_copy(os.path.join(full_root, path), target)
            _prune_empty_dirs(dest)
            sig = sign(data, manifest, private_key, password)
            write_atomic(os.path.join(dest, MANIFEST), data, mode=0o644)
            write_atomic(os.path.join(dest, SIGNATURE), sig, mode=0o644)
            read_verified(dest, public)
            if not _update_tree_matches(dest, files):
                raise BundleError("%s does not hold what its manifest ships after writing it; was it changed while "
                                  "the update was made?" % dest)
    finally:
        os.unlink(public)
    return {"manifest": manifest, "changed": True, "manifest_sha256": hashlib.sha256(data).hexdigest(),
            "key_id": kid, "shipped": manifest["shipped"], "full": full["totals"]}


def apply(update_root, base_root, dest, public_key, workers=4, check_mode=False):
    """Assemble at ``dest`` the bundle the update at ``update_root`` makes of the bundle at ``base_root``.

    Returns ``manifest``, ``changed``, ``manifest_sha256``, ``key_id``, ``totals``, ``shipped``. ``dest`` already
    holding this update applied (same manifest bytes, verified) is left as it is. Anything else at ``dest`` is
    replaced only when it is a bundle (it has a manifest); a directory of other files is refused.
    """
    require_model_signing()
    update_root, base_root, dest = (os.path.abspath(p) for p in (update_root, base_root, dest))
    if dest in (update_root, base_root):
        raise BundleError("the applied bundle's directory %s must be another directory than the update's and the "
                          "base's" % dest)
    upd, upd_sha, kid = read_verified(update_root, public_key)
    if upd["kind"] != "update":
        raise BundleError("%s is a full bundle, not an update: use it as the bundle itself (fleet_bundle), without a "
                          "base" % update_root)
    try:
        base, base_sha = read_verified(base_root, public_key)[:2]
    except BundleError as exc:
        raise BundleError("the base bundle at %s: %s" % (base_root, exc)) from exc
    if base_sha != upd["base"]["manifest_sha256"]:
        raise BundleError("this update was made against bundle %s (manifest sha256 %s), but the bundle at %s is %s "
                          "(manifest sha256 %s): apply it onto the bundle it was made against, or build a full bundle"
                          % (upd["base"]["id"], upd["base"]["manifest_sha256"], base_root, base["id"], base_sha))
    files = upd["files"]
    ships = shipped(files)
    present = list_tree(update_root)
    extra = sorted(set(present) - set(ships))
    if extra:
        raise BundleError("%s is in the update but its signed manifest does not ship it (%d such file(s)); refused"
                          % (extra[0], len(extra)))
    missing = sorted(set(ships) - set(present))
    if missing:
        raise BundleError("%s is missing from the update (%d file(s) missing); copy the update again"
                          % (missing[0], len(missing)))
    for path in sorted(files):
        if files[path].get("in") == "base":
            entry = base["files"].get(path)
            if entry is None or (entry["size"], entry["sha256"]) != (files[path]["size"], files[path]["sha256"]):
                raise BundleError("the update takes %s from its base, but the base's signed manifest does not list it "
                                  "with the same size and sha256; refused" % path)
    result = {"manifest": upd, "manifest_sha256": upd_sha, "key_id": kid, "totals": upd["totals"],
              "shipped": upd["shipped"]}
    if os.path.isdir(dest) and os.path.isfile(os.path.join(dest, MANIFEST)):
        with open(os.path.join(dest, MANIFEST), "rb") as f:
            same = hashlib.sha256(f.read()).hexdigest() == upd_sha
        if same:
            try:
                verify(dest, public_key, workers)
                return dict(result, changed=False)
            except BundleError:
                pass
    elif os.path.lexists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise BundleError("%s exists and is not a bundle (no %s); the applied bundle goes into a directory that "
                          "is not there yet, or that holds a bundle" % (dest, MANIFEST))
    if check_mode:
        return dict(result, changed=True)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(dir=parent, prefix=".%s.assembling-" % os.path.basename(dest))
    try:
        for path in sorted(files):
            source = base_root if files[path].get("in") == "base" else update_root
            _link_or_copy(os.path.join(source, path), os.path.join(work, path))
        for name in (MANIFEST, SIGNATURE):
            shutil.copyfile(os.path.join(update_root, name), os.path.join(work, name))
        try:
            verify(work, public_key, workers)
        except BundleError as exc:
            raise BundleError("the bundle assembled from the update at %s and its base at %s does not verify: %s"
                              % (update_root, base_root, exc)) from exc
        os.chmod(work, 0o755)  # noqa: S103 - a bundle directory: public files, like the one it replaces
        if os.path.lexists(dest):
            old = tempfile.mkdtemp(dir=parent, prefix=".%s.replaced-" % os.path.basename(dest))
            os.rmdir(old)
            os.rename(dest, old)
            os.rename(work, dest)
            shutil.rmtree(old)
        else:
            os.rename(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dict(result, changed=True)
