# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An offline bundle's signed manifest: what it carries, every file with its size and SHA-256 (private).

A bundle is a directory: ``manifest.json`` (this format), ``manifest.sig`` (the operator's signature over the
exact bytes of ``manifest.json``) and the files the manifest lists. A *full* bundle ships every file it lists.
An *update* bundle lists the whole content the site ends up with, but ships only what changed since its *base*
(the bundle it was made against, named by the SHA-256 of the base's ``manifest.json``); the entries it does not
ship say ``"in": "base"`` and are found, with the same SHA-256, in the base bundle (or in an earlier one of
the chain).

Verification (``verify_chain``) checks, before anything reads a file of the bundle: each signature with the
operator's public key, the chain (every update names the manifest before it), then every file the newest
manifest lists, in path order: present, a regular file (never a symlink), its size and SHA-256. The first file
that fails is named. A file in a bundle directory that its manifest does not list is refused too: the roles
hand whole directories on (a wheelhouse pip searches, a package pool), so nothing unsigned may sit in them.

Keys: EC (P-256, P-384, P-521; ECDSA with SHA-256) or Ed25519, PEM. ``scripts/model-sign keygen`` makes a
suitable EC key (encrypted at rest with a password, if wanted).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import re
import stat

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
except ImportError as exc:  # the controller's venv has it; the error says how to get it elsewhere
    CRYPTOGRAPHY_IMPORT_ERROR = exc
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

FORMAT = "autoglm.fleet/bundle/v1"
SIGNATURE_FORMAT = "autoglm.fleet/bundle-signature/v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# Files of the bundle directory itself that the manifest does not list (it cannot list itself).
SELF = (MANIFEST, SIGNATURE)
CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NOFOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class BundleError(Exception):
    """The bundle is refused or cannot be made; the message names the file and says what to do."""


def require_cryptography():
    if CRYPTOGRAPHY_IMPORT_ERROR is not None:
        raise BundleError("the cryptography library could not be imported (%s); run this on the controller, whose "
                          "venv has it, or pip install cryptography" % CRYPTOGRAPHY_IMPORT_ERROR)


# --- files -------------------------------------------------------------------------------------------------

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
        for name in sorted(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                raise BundleError("%s is a symbolic link; a bundle holds plain files and directories only"
                                  % os.path.join(dirpath, name))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel in SELF:
                continue
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                raise BundleError("%s is %s; a bundle holds plain files and directories only"
                                  % (full, "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"))
            out[rel] = st.st_size
    return out


def hash_files(root, paths, workers=4):
    """``{path: {"size", "sha256"}}`` for ``paths`` below ``root``, hashed in ``workers`` threads."""
    paths = sorted(paths)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(lambda p: file_digest(os.path.join(root, p)), paths))
    return {p: {"size": size, "sha256": sha} for p, (size, sha) in zip(paths, digests)}


def scan_tree(root, workers=4):
    """Every file below ``root`` (but the manifest and its signature) with its size and SHA-256."""
    return hash_files(root, list_tree(root), workers)


def safe_relpath(path):
    """A manifest path must be relative, posix, and stay below the bundle directory."""
    if (not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\x00" in path
            or any(part in ("", ".", "..") for part in path.split("/"))):
        raise BundleError("the manifest lists a path that is not a plain relative path: %r" % (path,))
    return path


# --- keys and signatures ---------------------------------------------------------------------------------------

def load_private_key(pem, password=None):
    require_cryptography()
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (TypeError, ValueError) as exc:
        raise BundleError("cannot load the signing key: %s (an encrypted key needs its password)" % exc) from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise BundleError("the signing key must be an EC (P-256, P-384, P-521) or Ed25519 key; "
                          "make one with scripts/model-sign keygen")
    return key


def load_public_key(pem):
    require_cryptography()
    if isinstance(pem, str):
        pem = pem.encode()
    try:
        key = serialization.load_pem_public_key(pem)
    except (TypeError, ValueError) as exc:
        raise BundleError("cannot load the bundle public key (PEM, BEGIN PUBLIC KEY): %s" % exc) from exc
    if not isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise BundleError("the bundle public key must be an EC or Ed25519 public key")
    return key


def key_id(public_key):
    """SHA-256 (hex) of the key's DER SubjectPublicKeyInfo: names the key in signatures and messages."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def sign_bytes(data, private_key):
    """The signature document (a dict) for ``data`` (bytes)."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        algorithm, sig = "ed25519", private_key.sign(data)
    else:
        algorithm, sig = "ecdsa-sha256", private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    return {"format": SIGNATURE_FORMAT, "algorithm": algorithm, "key_id": key_id(private_key.public_key()),
            "signature": base64.b64encode(sig).decode("ascii")}


def verify_bytes(data, sigdoc, public_key, what):
    """Check ``sigdoc`` over ``data`` with ``public_key``; BundleError naming ``what`` otherwise."""
    if not isinstance(sigdoc, dict) or sigdoc.get("format") != SIGNATURE_FORMAT:
        raise BundleError("%s is not a bundle signature (%s)" % (what, SIGNATURE_FORMAT))
    want = key_id(public_key)
    if sigdoc.get("key_id") != want:
        raise BundleError("%s was made with another key (key id %s), not the bundle public key you gave (key id %s); "
                          "use the operator's public key of the key that signed it, or have the bundle re-signed"
                          % (what, sigdoc.get("key_id"), want))
    try:
        sig = base64.b64decode(sigdoc.get("signature") or "", validate=True)
        if sigdoc.get("algorithm") == "ed25519" and isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(sig, data)
        elif sigdoc.get("algorithm") == "ecdsa-sha256" and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise BundleError("%s uses algorithm %r, which does not fit the public key"
                              % (what, sigdoc.get("algorithm")))
    except (InvalidSignature, ValueError) as exc:
        raise BundleError("%s does not verify with the bundle public key (key id %s): the manifest was changed "
                          "after it was signed, or the signature is damaged; do not use this bundle"
                          % (what, want)) from exc


# --- manifests --------------------------------------------------------------------------------------------------

def dump(manifest):
    """The bytes a manifest is written (and signed) as."""
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")


def manifest_id(files, contents, kind, base):
    """A bundle's id: a digest of what it holds (so rebuilding the same content gives the same id)."""
    doc = {"files": files, "contents": contents, "kind": kind, "base": base}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode("utf-8")).hexdigest()[:20]


def new_manifest(files, contents, created, kind="full", base=None):
    files = {p: dict(v) for p, v in sorted(files.items())}
    return {
        "format": FORMAT,
        "id": manifest_id(files, contents, kind, base),
        "kind": kind,
        "base": base,
        "created": created,
        "contents": contents,
        "files": files,
        "totals": totals(files),
    }


def totals(files):
    shipped = [v for v in files.values() if v.get("in") != "base"]
    return {"files": len(files), "bytes": sum(v["size"] for v in files.values()),
            "shipped_files": len(shipped), "shipped_bytes": sum(v["size"] for v in shipped)}


def parse(data, what):
    """Parse manifest bytes (already verified) and check their shape; BundleError naming ``what`` otherwise."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise BundleError("%s is not valid JSON: %s" % (what, exc)) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError("%s is not a bundle manifest of format %s" % (what, FORMAT))
    if doc.get("kind") not in ("full", "update"):
        raise BundleError("%s has an unknown kind %r" % (what, doc.get("kind")))
    base = doc.get("base")
    if doc["kind"] == "update" and not (isinstance(base, dict) and _HEX64.match(str(base.get("manifest_sha256")))):
        raise BundleError("%s is an update but names no base manifest" % what)
    files = doc.get("files")
    if not isinstance(files, dict):
        raise BundleError("%s has no file table" % what)
    for path, entry in files.items():
        safe_relpath(path)
        if (not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or entry["size"] < 0
                or not _HEX64.match(str(entry.get("sha256")))):
            raise BundleError("%s: the entry for %s has no valid size and sha256" % (what, path))
        if entry.get("in", "this") not in ("this", "base"):
            raise BundleError("%s: the entry for %s has an unknown location %r" % (what, path, entry.get("in")))
        if entry.get("in") == "base" and doc["kind"] != "update":
            raise BundleError("%s is a full bundle but says %s is in a base bundle" % (what, path))
    if not isinstance(doc.get("contents"), dict):
        raise BundleError("%s has no contents" % what)
    return doc


def read_signed(root, public_key):
    """``(manifest, sha256 of its bytes)`` of the bundle at ``root``, signature checked before parsing."""
    mpath, spath = os.path.join(root, MANIFEST), os.path.join(root, SIGNATURE)
    for path in (mpath, spath):
        if not os.path.isfile(path) or os.path.islink(path):
            raise BundleError("%s is missing (or not a plain file): %s is not a complete bundle" % (path, root))
    with open(mpath, "rb") as f:
        data = f.read()
    try:
        with open(spath, "rb") as f:
            sigdoc = json.load(f)
    except ValueError as exc:
        raise BundleError("%s is not valid JSON: %s" % (spath, exc)) from exc
    verify_bytes(data, sigdoc, public_key, spath)
    return parse(data, mpath), hashlib.sha256(data).hexdigest()


def write_signed(root, manifest, private_key):
    """Write ``manifest.json`` and ``manifest.sig`` atomically (the signature last)."""
    data = dump(manifest)
    sigdoc = sign_bytes(data, private_key)
    _write_atomic(os.path.join(root, MANIFEST), data)
    _write_atomic(os.path.join(root, SIGNATURE), (json.dumps(sigdoc, indent=1, sort_keys=True) + "\n").encode())
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path, data):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --- verification -----------------------------------------------------------------------------------------------

def verify_chain(roots, public_key, workers=4):
    """Verify a bundle and the bundles it builds on; return what the site can use.

    ``roots``: bundle directories, oldest first (a full bundle, then the updates made one after another); the
    last is the one being rolled out. Returns a dict: ``manifest`` (the newest), ``manifest_sha256``,
    ``chain`` (id, kind, manifest_sha256, path of each), ``key_id``, ``files`` (``{path: {size, sha256,
    root}}``, where ``root`` is the directory that holds the verified file) and ``totals``.
    """
    if not roots:
        raise BundleError("no bundle given")
    roots = [os.path.abspath(r) for r in roots]
    manifests, shas = [], []
    for root in roots:
        if not os.path.isdir(root):
            raise BundleError("%s is not a directory (a bundle is the directory playbooks/bundle.yml wrote)" % root)
        m, sha = read_signed(root, public_key)
        manifests.append(m)
        shas.append(sha)
    if manifests[0]["kind"] != "full":
        raise BundleError("%s is an update bundle (base %s): give the bundle it was made against first (the site's "
                          "current full bundle, then any updates applied since, oldest first)"
                          % (roots[0], manifests[0]["base"].get("id")))
    for n in range(1, len(roots)):
        want = manifests[n].get("base") or {}
        if manifests[n]["kind"] != "update" or want.get("manifest_sha256") != shas[n - 1]:
            raise BundleError(
                "%s (bundle %s) was made against bundle %s (manifest sha256 %s), not against %s (bundle %s, manifest "
                "sha256 %s); give the bundle it was made against as its base"
                % (roots[n], manifests[n]["id"], want.get("id", "none, it is a full bundle"),
                   want.get("manifest_sha256", "-"), roots[n - 1], manifests[n - 1]["id"], shas[n - 1]))
    top = manifests[-1]
    if top["kind"] == "update" and len(roots) == 1:
        raise BundleError("%s is an update bundle made against bundle %s: give that bundle (the site's current one) "
                          "as its base" % (roots[0], (top.get("base") or {}).get("id")))

    # Where each file of the newest manifest lives: shipped by the newest, or by the nearest earlier bundle that
    # ships it with the same digest.
    located = {}
    for path, entry in sorted(top["files"].items()):
        for n in range(len(roots) - 1, -1, -1):
            shipped = manifests[n]["files"].get(path)
            if shipped and shipped.get("in", "this") == "this" and shipped["sha256"] == entry["sha256"] \
                    and shipped["size"] == entry["size"]:
                located[path] = n
                break
        else:
            raise BundleError("%s lists %s (sha256 %s) as carried by its base, but no bundle given ships it; give the "
                              "site's current bundle (and the updates applied since) as the base"
                              % (roots[-1], path, entry["sha256"]))

    # Nothing unsigned in any directory: every file present must be one its own manifest ships.
    for n, root in enumerate(roots):
        present = list_tree(root)
        listed = {p for p, e in manifests[n]["files"].items() if e.get("in", "this") == "this"}
        extra = sorted(set(present) - listed)
        if extra:
            raise BundleError("%s holds %s, which its signed manifest does not list (%d such file(s)); remove it or "
                              "rebuild the bundle" % (root, extra[0], len(extra)))
        missing = sorted(p for p in listed if p not in present and located.get(p) == n)
        if missing:
            raise BundleError("bundle file %s is missing from %s (%d file(s) missing); copy the bundle again"
                              % (missing[0], root, len(missing)))
        for path in sorted(p for p, where in located.items() if where == n):
            if present[path] != top["files"][path]["size"]:
                raise BundleError("bundle file %s in %s was tampered with or damaged: it has %d bytes, the signed "
                                  "manifest says %d; copy the bundle again from its source"
                                  % (path, root, present[path], top["files"][path]["size"]))

    # A thin image archive loads on top of the image it was thinned against: the archives it needs, oldest first.
    chains = _image_chains(manifests, roots)
    checks = [(roots[located[p]], p, top["files"][p]) for p in sorted(located)]
    seen = {(roots[located[p]], p) for p in located}
    for chain in chains.values():
        for link in chain:
            if (link["root"], link["path"]) not in seen:
                seen.add((link["root"], link["path"]))
                checks.append((link["root"], link["path"], {"size": link["size"], "sha256": link["sha256"]}))

    # Then the digests, every file once; the first mismatch in path order is the one named.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(lambda c: _digest_or_none(os.path.join(c[0], c[1])), checks))
    for (root, path, want), got in zip(checks, digests):
        if got is None:
            raise BundleError("bundle file %s is missing from %s; copy the bundle again" % (path, root))
        size, sha = got
        if sha != want["sha256"] or size != want["size"]:
            raise BundleError("bundle file %s in %s was tampered with or damaged: its sha256 is %s, the signed manifest "
                              "says %s; copy the bundle again from its source, and find out how it changed"
                              % (path, root, sha, want["sha256"]))

    return {
        "manifest": top,
        "manifest_sha256": shas[-1],
        "key_id": key_id(public_key),
        "chain": [{"id": m["id"], "kind": m["kind"], "manifest_sha256": s, "path": r}
                  for m, s, r in zip(manifests, shas, roots)],
        "files": {p: dict(top["files"][p], root=roots[located[p]]) for p in sorted(located)},
        "totals": totals(top["files"]),
        "image_chains": chains,
    }


def _digest_or_none(path):
    try:
        return file_digest(path)
    except FileNotFoundError:
        return None


def _locate(manifests, roots, upto, path, sha256):
    """The root of the nearest bundle at or before index ``upto`` that ships ``path`` with ``sha256``."""
    for n in range(upto, -1, -1):
        entry = manifests[n]["files"].get(path)
        if entry and entry.get("in", "this") == "this" and entry["sha256"] == sha256:
            return roots[n], entry
    return None, None


def _image_chains(manifests, roots):
    """``{image name: [{id, root, path, size, sha256}]}``: for each image of the newest manifest that is a thin
    archive, the archives it stands on, oldest first (the newest's own archive not included)."""
    chains = {}
    top = len(manifests) - 1
    for image in manifests[top]["contents"].get("images", []):
        chain, need, n = [], image.get("base_id"), top - 1
        while need:
            found = None
            while n >= 0 and found is None:
                found = next((i for i in manifests[n]["contents"].get("images", [])
                              if i["name"] == image["name"] and i["id"] == need), None)
                if found is None:
                    n -= 1
            if found is None:
                raise BundleError("the image archive %s is thin (it lacks the layers of image %s), but no base bundle "
                                  "carries that image; give the site's current bundle as the base"
                                  % (image["path"], need))
            entry = manifests[n]["files"].get(found["path"])
            root, shipped = _locate(manifests, roots, n, found["path"], entry["sha256"]) if entry else (None, None)
            if root is None:
                raise BundleError("no bundle given ships %s (image %s), which the thin archive %s needs"
                                  % (found["path"], need, image["path"]))
            chain.insert(0, {"id": found["id"], "root": root, "path": found["path"], "size": shipped["size"],
                             "sha256": shipped["sha256"]})
            need, n = found.get("base_id"), n - 1
        if chain:
            chains[image["name"]] = chain
    return chains


# --- layout -------------------------------------------------------------------------------------------------------

def component_of(path):
    """What ships together in an update: the apt indices (``apt``), the wheelhouse, one model revision
    (``model:<id>/<revision>``); a package in ``apt/pool/`` or an image archive ships on its own (None)."""
    parts = path.split("/")
    if parts[0] == "apt":
        return None if len(parts) > 2 and parts[1] == "pool" else "apt"
    if parts[0] == "wheelhouse":
        return "wheelhouse"
    if parts[0] == "models" and len(parts) > 3:
        return "model:%s/%s" % (parts[1], parts[2])
    return None


def seal(root, contents, private_key, created, workers=4, check_mode=False):
    """Write (or keep) the signed manifest of the full bundle at ``root``; ``(manifest, changed)``."""
    files = scan_tree(root, workers)
    public = private_key.public_key()
    try:
        old, _sha = read_signed(root, public)
    except BundleError:
        old = None
    if old is not None and old["kind"] == "full" and old["files"] == files and old["contents"] == contents:
        return old, False
    manifest = new_manifest(files, contents, created, kind="full")
    if not check_mode:
        write_signed(root, manifest, private_key)
    return manifest, True


# --- update bundles ------------------------------------------------------------------------------------------------

def diff(full, base, base_sha, component_of):
    """The file table of an update from ``base`` (a manifest) to ``full`` (a manifest of the same site).

    A component (``component_of(path)``: a name, or None for a file on its own) ships whole when any of its files
    changed; a file on its own ships when it is new or changed. Everything else is marked ``"in": "base"``.
    """
    base_files = base["files"]
    changed_components = set()
    for path, entry in full["files"].items():
        old = base_files.get(path)
        if not old or old["sha256"] != entry["sha256"]:
            comp = component_of(path)
            if comp is not None:
                changed_components.add(comp)
    for path in base_files:
        if path not in full["files"] and component_of(path) is not None:
            changed_components.add(component_of(path))
    files = {}
    for path, entry in full["files"].items():
        old = base_files.get(path)
        comp = component_of(path)
        same = old is not None and old["sha256"] == entry["sha256"] and old["size"] == entry["size"]
        if same and (comp is None or comp not in changed_components):
            files[path] = {"size": entry["size"], "sha256": entry["sha256"], "in": "base"}
        else:
            files[path] = {"size": entry["size"], "sha256": entry["sha256"]}
    return files, {"id": base["id"], "manifest_sha256": base_sha}


def make_update(full_root, full, base, base_sha, dest, private_key, created, check_mode=False):
    """Write to ``dest`` the update bundle from ``base`` to ``full`` (both manifests, ``full`` at ``full_root``).

    Image archives: an image the base already carries (same id) is taken from the base whatever the bytes of its
    archive; a new image ships as a thin archive without the layers it shares with the base's image of the same
    name (its entry then names that image in ``base_id``). Returns ``(manifest, changed)``; a second run with the
    same inputs changes nothing.
    """
    from ansible_collections.autoglm.fleet.plugins.module_utils._image_archive import chain_ids, write_thin

    full_root, dest = os.path.abspath(full_root), os.path.abspath(dest)
    if dest == full_root or dest.startswith(full_root + os.sep) or full_root.startswith(dest + os.sep):
        raise BundleError("the update directory %s must be outside the full bundle %s" % (dest, full_root))
    try:
        old, _sha = read_signed(dest, private_key.public_key())
    except BundleError:
        old = None
    old_images = {i["name"]: i for i in (old or {}).get("contents", {}).get("images", [])}
    files, base_ref = diff(full, base, base_sha, component_of)
    contents = json.loads(json.dumps(full["contents"]))
    base_images = {i["name"]: i for i in base["contents"].get("images", [])}
    thin = {}
    for image in contents.get("images", []):
        image.pop("base_id", None)
        prior = base_images.get(image["name"])
        if prior is None:
            continue
        if prior["id"] == image["id"]:
            # the site has this image: the base's archive stands for it (the bytes of a re-export may differ)
            files.pop(image["path"], None)
            image["path"] = prior["path"]
            entry = base["files"][prior["path"]]
            files[prior["path"]] = {"size": entry["size"], "sha256": entry["sha256"], "in": "base"}
        else:
            thin[image["path"]] = (image, prior)
    shipped = sorted(p for p, e in files.items() if e.get("in") != "base")
    changed = False
    for path in shipped:
        target = os.path.join(dest, path)
        present = os.path.isfile(target) and not os.path.islink(target)
        if path in thin:
            image, prior = thin[path]
            made = old_images.get(image["name"]) or {}
            was = (old or {}).get("files", {}).get(path)
            if present and was and made.get("id") == image["id"] and made.get("base_id") in (None, prior["id"]) \
                    and file_digest(target)[1] == was["sha256"]:
                files[path] = {"size": was["size"], "sha256": was["sha256"]}
                if made.get("base_id"):
                    image["base_id"] = made["base_id"]
                continue
            changed = True
            if check_mode:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if write_thin(os.path.join(full_root, path), target, chain_ids(prior.get("diff_ids", [])))["omitted"]:
                image["base_id"] = prior["id"]
            size, sha = file_digest(target)
            files[path] = {"size": size, "sha256": sha}
            continue
        if present and file_digest(target)[1] == files[path]["sha256"]:
            continue
        changed = True
        if not check_mode:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _link_or_copy(os.path.join(full_root, path), target)
    if os.path.isdir(dest):
        for rel in sorted(set(list_tree(dest)) - set(shipped)):
            changed = True
            if not check_mode:
                os.unlink(os.path.join(dest, rel))
    manifest = new_manifest(files, contents, created, kind="update", base=base_ref)
    if old is not None and not changed and old["files"] == manifest["files"] \
            and old["contents"] == manifest["contents"] and old["base"] == manifest["base"]:
        return old, False
    if not check_mode:
        os.makedirs(dest, exist_ok=True)
        write_signed(dest, manifest, private_key)
    return manifest, True


def _link_or_copy(source, target):
    tmp = "%s.tmp-%d" % (target, os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        os.link(source, tmp)
    except OSError:
        import shutil

        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def describe(verified):
    """What the roles need of a verified bundle (``verify_chain``'s result): absolute controller paths."""
    contents = verified["manifest"]["contents"]
    files = verified["files"]

    def root_of(prefix, what):
        roots = {e["root"] for p, e in files.items() if p.startswith(prefix + "/")}
        if len(roots) != 1:
            raise BundleError("the bundle's %s (%s/) is %s" % (what, prefix, "empty" if not roots else
                                                                "split over several bundles"))
        return roots.pop()

    out = {"images": [], "depot_files": []}
    if contents.get("wheelhouse"):
        path = contents["wheelhouse"]["path"]
        out["wheelhouse_dir"] = os.path.join(root_of(path, "wheelhouse"), path)
    if contents.get("model"):
        model = dict(contents["model"])
        model["dir"] = os.path.join(root_of(model["path"], "model"), model["path"])
        out["model"] = model
    if contents.get("apt"):
        apt = dict(contents["apt"])
        key = apt["path"] + "/bundle-repo.gpg"
        if key not in files:
            raise BundleError("the bundle's apt repository has no %s" % key)
        apt["key_file"] = os.path.join(files[key]["root"], key)
        out["apt"] = apt
    for image in contents.get("images", []):
        entry = dict(image)
        entry["file"] = os.path.join(files[image["path"]]["root"], image["path"])
        entry["load_chain"] = [{"id": link["id"], "file": os.path.join(link["root"], link["path"])}
                               for link in verified["image_chains"].get(image["name"], [])]
        out["images"].append(entry)
    served = [contents[k]["path"] for k in ("apt", "model") if contents.get(k)]
    out["depot_files"] = [{"path": p, "root": e["root"], "size": e["size"], "sha256": e["sha256"]}
                          for p, e in sorted(files.items()) if any(p.startswith(s + "/") for s in served)]
    return out
