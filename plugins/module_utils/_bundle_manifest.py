# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An offline bundle's signed manifest: every file with its size and SHA-256, and the versions it carries (private).

A bundle is a directory: ``manifest.json`` (this format), ``manifest.sig`` and the files the manifest lists.

``manifest.json`` is canonical JSON (keys sorted, one-space indent, ASCII, a final newline), so the same content
gives the same bytes: ``format``, ``id`` (a digest of files and contents: the same content keeps its id),
``kind`` (``full``), ``created`` (UTC), ``contents`` (what the bundle carries and the versions, as the caller
gives them), ``files`` (``{relative posix path: {size, sha256}}``) and ``totals``.

``manifest.sig`` is a signature in the collection's one signature mode (``_signing``: OpenSSF model_signing's
key mode, the keys ``scripts/model-sign keygen`` makes): a statement over the SHA-256 of ``manifest.json``'s
exact bytes, with an ``autoglm_bundle`` record (format and id) in its predicate, so a model's signature is never
taken for a bundle's, nor a bundle's for a model's.

``verify`` checks, before anything reads a file of the bundle: the signature with the operator's public key, that
it is over these bytes of ``manifest.json``, the manifest's shape; then the tree - nothing but plain files and
directories (a symbolic link anywhere is refused, whatever it points at), no file the manifest does not list
(the roles hand whole directories on: a wheelhouse pip searches, a package pool), none missing, every size, then
every SHA-256. The first file that fails is named, in path order.

Update bundles (``_bundle_update`` makes and applies them): kind ``update``, with ``base`` (the id and the
manifest SHA-256 of the bundle it was made against), and ``"in": "base"`` on the entries of the files the base
already holds; ``diff`` here is that file table. ``verify`` checks an update bundle once it is applied (every file
present), exactly as a full one.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import stat
import tempfile

from ansible_collections.autoglm.fleet.plugins.module_utils._fsutil import write_atomic
from ansible_collections.autoglm.fleet.plugins.module_utils._signing import (
    IMPORT_ERROR,
    KeyModeError,
    key_id,
    sign_digests,
    verify_statement,
)

FORMAT = "autoglm.fleet/bundle/v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# The predicate record of a bundle's signature (a model's is ``autoglm_model``).
RECORD = "autoglm_bundle"
# Files of the bundle directory itself that the manifest does not list (it cannot list itself).
SELF = (MANIFEST, SIGNATURE)
KINDS = ("full", "update")
CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NOFOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class BundleError(Exception):
    """The bundle is refused or cannot be made; the message names the file and says what to do."""


def failure(what, exc):
    """A bundle module's failure message: ``what`` (``bundle X refused``), then the BundleError's message, or for an
    OSError the file it could not read or write."""
    if isinstance(exc, BundleError):
        return "%s: %s" % (what, exc)
    return "%s: cannot read or write %s: %s" % (what, exc.filename or "a file", exc.strerror or exc)


def require_model_signing():
    if IMPORT_ERROR is not None:
        raise BundleError("the model_signing library could not be imported (%s); bundles are signed in the "
                          "model-signing key mode: run this on the controller, whose venv has it, or pip install "
                          "model-signing pyopenssl" % IMPORT_ERROR)


# --- files -----------------------------------------------------------------------------------------------------

def _read_nofollow(path):
    """The bytes of a regular file, never through a symbolic link."""
    fd = os.open(path, _NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError("%s is not a regular file" % path)
        chunks = []
        while True:
            block = os.read(fd, CHUNK)
            if not block:
                return b"".join(chunks)
            chunks.append(block)
    finally:
        os.close(fd)


def file_digest(path):
    """``(size, sha256 hex)`` of a regular file, read without following a symlink."""
    fd = os.open(path, _NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError("%s is not a regular file" % path)
        h = hashlib.sha256()
        size = 0
        while True:
            block = os.read(fd, CHUNK)
            if not block:
                break
            size += len(block)
            h.update(block)
        return size, h.hexdigest()
    finally:
        os.close(fd)


def list_tree(root):
    """``{relative posix path: size}`` of every file below ``root`` but the manifest and its signature.

    A symlink, device, socket or FIFO anywhere below ``root`` raises BundleError naming it.
    """
    if not os.path.isdir(root) or os.path.islink(root):
        raise BundleError("%s is not a directory" % root)
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                raise BundleError("%s is a symbolic link; a bundle holds plain files and directories only"
                                  % os.path.relpath(os.path.join(dirpath, name), root))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                raise BundleError("%s is %s; a bundle holds plain files and directories only"
                                  % (rel, "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"))
            if rel not in SELF:
                out[rel] = st.st_size
    return out


def hash_files(root, paths, workers=4):
    """``{path: {"size", "sha256"}}`` for ``paths`` below ``root``, hashed in ``workers`` threads."""
    paths = sorted(paths)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(lambda p: file_digest(os.path.join(root, p)), paths))
    return {p: {"size": size, "sha256": sha} for p, (size, sha) in zip(paths, digests, strict=True)}


def scan_tree(root, workers=4):
    """Every file below ``root`` (but the manifest and its signature) with its size and SHA-256."""
    return hash_files(root, list_tree(root), workers)


def safe_relpath(path):
    """A manifest path must be relative, posix, and stay below the bundle directory."""
    if (not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\x00" in path
            or any(part in ("", ".", "..") for part in path.split("/"))):
        raise BundleError("the manifest lists a path that is not a plain relative path: %r" % (path,))
    return path


# --- the manifest --------------------------------------------------------------------------------------------

def dump(manifest):
    """The canonical bytes a manifest is written (and signed) as."""
    return (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def manifest_id(files, contents):
    """A bundle's id: a digest of what it holds (so the same content keeps the same id)."""
    doc = {"files": files, "contents": contents}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode("utf-8")).hexdigest()[:20]


def totals(files):
    return {"files": len(files), "bytes": sum(v["size"] for v in files.values())}


def new_manifest(files, contents, created):
    files = {p: {"size": v["size"], "sha256": v["sha256"]} for p, v in sorted(files.items())}
    return {"format": FORMAT, "id": manifest_id(files, contents), "kind": "full", "created": created,
            "contents": contents, "files": files, "totals": totals(files)}


def parse(data, what=MANIFEST):
    """Parse manifest bytes (already verified) and check their shape; BundleError naming ``what`` otherwise."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise BundleError("%s is not valid JSON: %s" % (what, exc)) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError("%s is not a bundle manifest of format %s" % (what, FORMAT))
    if doc.get("kind") not in KINDS:
        raise BundleError("%s is of kind %r; this version knows %s" % (what, doc.get("kind"), " and ".join(KINDS)))
    if doc["kind"] == "update":
        base = doc.get("base")
        if (not isinstance(base, dict) or not isinstance(base.get("id"), str)
                or not _HEX64.match(str(base.get("manifest_sha256")))):
            raise BundleError("%s is an update bundle without a valid base (the id and manifest sha256 of the bundle "
                              "it was made against)" % what)
    files = doc.get("files")
    if not isinstance(files, dict):
        raise BundleError("%s has no file table" % what)
    for path, entry in files.items():
        safe_relpath(path)
        if path in SELF:
            raise BundleError("%s lists %s, which is the bundle's own manifest or signature" % (what, path))
        if (not isinstance(entry, dict) or isinstance(entry.get("size"), bool) or not isinstance(entry.get("size"), int)
                or entry["size"] < 0 or not _HEX64.match(str(entry.get("sha256")))):
            raise BundleError("%s: the entry for %s has no valid size and sha256" % (what, path))
        if "in" in entry and (doc["kind"] != "update" or entry["in"] != "base"):
            raise BundleError("%s: the entry for %s is marked in %r; only an update's files can be in its base"
                              % (what, path, entry["in"]))
    if not isinstance(doc.get("contents"), dict):
        raise BundleError("%s has no contents" % what)
    return doc


def summary(manifest):
    """What a module reports of a manifest (never the file table)."""
    return {k: manifest[k] for k in ("id", "kind", "created", "totals")}


# --- signature -----------------------------------------------------------------------------------------------

def sign(data, manifest, private_key, password=None):
    """The text of ``manifest.sig`` over ``data`` (the bytes of ``manifest.json``) with the PEM key file
    ``private_key`` (``password``, bytes, for an encrypted key)."""
    require_model_signing()
    try:
        return sign_digests("autoglm-bundle-%s" % manifest["id"], {MANIFEST: hashlib.sha256(data).hexdigest()},
                            RECORD, {"format": FORMAT, "id": manifest["id"]}, private_key, password)
    except KeyModeError as exc:
        raise BundleError("cannot sign with the private key %s: %s (an EC P-256/384/521 key in PEM, as "
                          "scripts/model-sign keygen makes; an encrypted key needs its passphrase)"
                          % (private_key, exc.reason)) from exc


def read_verified(root, public_key):
    """``(manifest, sha256 of manifest.json, key id)`` of the bundle at ``root``: the signature is checked with
    the PEM public key file ``public_key`` over the exact bytes read, before they are parsed."""
    require_model_signing()
    mpath, spath = os.path.join(root, MANIFEST), os.path.join(root, SIGNATURE)
    for name, path in ((MANIFEST, mpath), (SIGNATURE, spath)):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise BundleError("%s is missing: %s is not a sealed bundle (bundle_seal writes it)"
                              % (name, root)) from None
        if not stat.S_ISREG(mode):
            raise BundleError("%s is %s, not a plain file: refused"
                              % (name, "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"))
    data = _read_nofollow(mpath)
    try:
        signed, predicate = verify_statement(spath, public_key)
    except KeyModeError as exc:
        if exc.stage == "key":
            raise BundleError("cannot load the public key %s: %s; give the operator's PEM EC public key (the .pub "
                              "of scripts/model-sign keygen)" % (public_key, exc.reason)) from exc
        if exc.stage == "read":
            raise BundleError("%s is not a readable signature (%s): the bundle is damaged; copy it again"
                              % (SIGNATURE, exc.reason)) from exc
        if exc.stage == "verify":
            raise BundleError("%s does not verify with the public key %s (%s): the bundle was signed with another "
                              "key, or the signature was changed; do not use this bundle"
                              % (SIGNATURE, public_key, exc.reason)) from exc
        raise BundleError("%s: cannot read the signed statement (%s)" % (SIGNATURE, exc.reason)) from exc
    record = predicate.get(RECORD)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise BundleError("%s is a valid signature, but not of a bundle (no %s record of format %s): it may be a "
                          "model's signature; refused" % (SIGNATURE, RECORD, FORMAT))
    digests = {rd.identifier: rd.digest for rd in signed.resource_descriptors()}
    if set(digests) != {MANIFEST} or digests[MANIFEST].algorithm != "sha256":
        raise BundleError("%s signs %s, not the bundle's %s alone; refused"
                          % (SIGNATURE, ", ".join(sorted(digests)) or "nothing", MANIFEST))
    sha = hashlib.sha256(data).hexdigest()
    if digests[MANIFEST].digest_hex != sha:
        raise BundleError("%s was changed after it was signed (or is truncated): its sha256 is %s, the signature is "
                          "over %s; do not use this bundle, copy it again from its source"
                          % (MANIFEST, sha, digests[MANIFEST].digest_hex))
    manifest = parse(data)
    if record.get("id") != manifest["id"]:
        raise BundleError("%s is signed as bundle %s but says it is bundle %s; refused"
                          % (MANIFEST, record.get("id"), manifest["id"]))
    try:
        kid = key_id(public_key)
    except KeyModeError as exc:
        raise BundleError("cannot load the public key %s: %s" % (public_key, exc.reason)) from exc
    return manifest, sha, kid


# --- verify and seal -----------------------------------------------------------------------------------------

def verify(root, public_key, workers=4):
    """Verify the bundle at ``root`` with the PEM public key file ``public_key``; BundleError naming the first
    file that fails. Returns ``manifest``, ``manifest_sha256``, ``key_id`` and ``totals``."""
    root = os.path.abspath(root)
    if not os.path.isdir(root) or os.path.islink(root):
        raise BundleError("%s is not a directory (a bundle is the directory bundle_seal sealed)" % root)
    manifest, sha, kid = read_verified(root, public_key)
    listed = manifest["files"]
    present = list_tree(root)
    extra = sorted(set(present) - set(listed))
    if extra:
        raise BundleError("%s is in the bundle but not in its signed manifest (%d such file(s)): remove it, or "
                          "reseal the bundle where it was built" % (extra[0], len(extra)))
    missing = sorted(set(listed) - set(present))
    if missing:
        if manifest["kind"] == "update" and all(listed[p].get("in") == "base" for p in missing):
            raise BundleError("%s is missing: this is an update bundle, which carries only what changed since bundle "
                              "%s; apply it onto that bundle first (fleet_bundle_base, docs/bundle.md)"
                              % (missing[0], manifest["base"]["id"]))
        raise BundleError("%s is missing from the bundle (%d file(s) missing); copy the bundle again"
                          % (missing[0], len(missing)))
    for path in sorted(listed):
        if present[path] != listed[path]["size"]:
            raise BundleError("%s was tampered with or damaged: it has %d bytes, the signed manifest says %d; copy "
                              "the bundle again from its source" % (path, present[path], listed[path]["size"]))
    got = hash_files(root, listed, workers)
    for path in sorted(listed):
        if got[path]["sha256"] != listed[path]["sha256"]:
            raise BundleError("%s was tampered with or damaged: its sha256 is %s, the signed manifest says %s; copy "
                              "the bundle again from its source, and find out how it changed"
                              % (path, got[path]["sha256"], listed[path]["sha256"]))
    return {"manifest": manifest, "manifest_sha256": sha, "key_id": kid, "totals": manifest["totals"]}


def _public_half(private_key, password):
    """A temp file with the PEM public half of ``private_key`` (not secret); the caller removes it."""
    from cryptography.hazmat.primitives import serialization

    try:
        with open(private_key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError("cannot load the private key %s: %s (an EC key in PEM, as scripts/model-sign keygen "
                          "makes; an encrypted key needs its passphrase)" % (private_key, exc)) from exc
    fd, path = tempfile.mkstemp(suffix=".pub")
    with os.fdopen(fd, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def seal(root, contents, private_key, password=None, created="", workers=4, check_mode=False):
    """Write (or keep) the signed manifest of the bundle at ``root``.

    Returns a dict: ``manifest``, ``changed``, ``before`` (the manifest that was there and verified with this
    key, or None), ``manifest_sha256``, ``key_id``. A bundle whose files and contents did not change keeps its
    manifest and signature. The manifest is written first, then the signature, each atomically; what was written
    is verified before this returns (between the two renames a reader finds a signature that does not fit, and
    refuses the bundle).
    """
    require_model_signing()
    root = os.path.abspath(root)
    files = scan_tree(root, workers)
    contents = json.loads(json.dumps(contents, sort_keys=True))
    public = _public_half(private_key, password)
    try:
        try:
            before, sha, kid = read_verified(root, public)
        except BundleError:
            before, sha, kid = None, None, key_id(public)
        if before is not None and before["files"] == files and before["contents"] == contents:
            return {"manifest": before, "changed": False, "before": before, "manifest_sha256": sha, "key_id": kid}
        manifest = new_manifest(files, contents, created)
        data = dump(manifest)
        sha = hashlib.sha256(data).hexdigest()
        if not check_mode:
            sig = sign(data, manifest, private_key, password)
            write_atomic(os.path.join(root, MANIFEST), data, mode=0o644)
            write_atomic(os.path.join(root, SIGNATURE), sig, mode=0o644)
            read_verified(root, public)
    finally:
        os.unlink(public)
    return {"manifest": manifest, "changed": True, "before": before, "manifest_sha256": sha, "key_id": kid}


# --- update bundles ------------------------------------------------------------------------------------------

def changes(before, after):
    """Which files ``after`` (a manifest) adds, changes and removes against ``before`` (a manifest, or None)."""
    old = (before or {}).get("files", {})
    new = after["files"]
    return {"added": sorted(set(new) - set(old)),
            "changed": sorted(p for p in set(new) & set(old) if new[p] != old[p]),
            "removed": sorted(set(old) - set(new))}


def component_of(path):
    """What ships together in an update: the apt indices (``apt``), the wheelhouse, one model's files
    (``model:<org>/<name>`` for ``models/<org>/<name>/<revision>/...``); a package in ``apt/pool/``, an image
    archive or any other file ships on its own (None)."""
    parts = path.split("/")
    if parts[0] == "apt":
        return None if len(parts) > 2 and parts[1] == "pool" else "apt"
    if parts[0] == "wheelhouse":
        return "wheelhouse"
    if parts[0] == "models" and len(parts) > 3:
        return "model:%s/%s" % (parts[1], parts[2])
    return None


def diff(full, base, base_sha, component=component_of):
    """The file table of an update from ``base`` (the site's current manifest, whose bytes hash to ``base_sha``)
    to ``full`` (the manifest of what the site should hold), and the update's ``base`` reference.

    A component (``component(path)``: a name, or None for a file on its own) ships whole when any of its files
    was added, changed or removed; a file on its own ships when it is new or changed. Everything else is marked
    ``"in": "base"`` (the site has it, with the same size and SHA-256).
    """
    # an applied update is a base too: its entries' "in" marks are not part of what a file is
    base_files = {p: {"size": e["size"], "sha256": e["sha256"]} for p, e in base["files"].items()}
    touched = set()
    for path, entry in full["files"].items():
        if base_files.get(path) != {"size": entry["size"], "sha256": entry["sha256"]} and component(path):
            touched.add(component(path))
    for path in base_files:
        if path not in full["files"] and component(path):
            touched.add(component(path))
    files = {}
    for path, entry in sorted(full["files"].items()):
        same = base_files.get(path) == {"size": entry["size"], "sha256": entry["sha256"]}
        comp = component(path)
        files[path] = {"size": entry["size"], "sha256": entry["sha256"]}
        if same and (comp is None or comp not in touched):
            files[path]["in"] = "base"
    return files, {"id": base["id"], "manifest_sha256": base_sha}
