# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a model consists of: signed statements (OpenSSF model_signing), unsigned manifests, sources.

Signed mode reads a ``model_signing sign key`` bundle, verifies its DSSE signature against the public
key BEFORE anything is downloaded, checks that the statement is for the model id and revision asked for
(``scripts/model-sign`` records them in the predicate) and takes the file list and SHA-256 digests from
the in-toto statement's resources. After the files are placed, ``verify_directory`` runs the library's own verify
over the directory, so what sits on disk is exactly what was signed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re

from ansible_collections.autoglm.fleet.plugins.module_utils._download import Source, safe_relpath

try:
    from model_signing import hashing, verifying
    from model_signing._signing import sign_ec_key, sign_sigstore_pb
except Exception as exc:  # ImportError, and model_signing's own import errors without pyopenssl
    MODEL_SIGNING_IMPORT_ERROR = exc
else:
    MODEL_SIGNING_IMPORT_ERROR = None

MISSING_LIBRARY = ("the model_signing library could not be imported (%s); install model-signing and pyopenssl "
                   "in the runtime venv (pip install model-signing pyopenssl), or set require_signature: false "
                   "with an unsigned manifest")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
# The predicate field scripts/model-sign records the model id and revision in (model_signing's v1.0
# predicate lets verifiers ignore fields they do not know).
BINDING = "autoglm_model"


class ManifestError(Exception):
    """The manifest or signature is unusable; the message says why and what to do."""


def build_sources(specs, model_id, revision):
    """``[{type, url}]`` -> ``[Source]``; raise ManifestError naming the bad entry."""
    out = []
    for n, spec in enumerate(specs):
        kind = spec.get("type") or "http"
        url = spec.get("url")
        if not url:
            raise ManifestError("sources[%d] has no url; give each source a url" % n)
        if kind in ("hf", "modelscope") and not model_id:
            raise ManifestError("sources[%d] is of type %s, which needs model_id" % (n, kind))
        try:
            out.append(Source(kind, url, model_id or "", revision))
        except ValueError as exc:
            raise ManifestError("sources[%d]: %s" % (n, exc)) from exc
    if not out:
        raise ManifestError("no sources given; list at least one mirror in sources")
    return out


def parse_unsigned(data):
    """Parse an unsigned manifest: a JSON list (or ``{"files": [...]}``) of ``{path, size, sha256}``."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ManifestError("the manifest is not valid JSON: %s" % exc) from exc
    if isinstance(doc, dict):
        doc = doc.get("files")
    if not isinstance(doc, list) or not doc:
        raise ManifestError('the manifest must be a non-empty JSON list of {"path", "size", "sha256"} objects')
    files, seen = [], set()
    for n, item in enumerate(doc):
        if not isinstance(item, dict):
            raise ManifestError("manifest entry %d is not an object" % n)
        path, size, sha = item.get("path"), item.get("size"), item.get("sha256")
        if not isinstance(path, str):
            raise ManifestError("manifest entry %d has no path" % n)
        try:
            safe_relpath(path)
        except ValueError as exc:
            raise ManifestError(str(exc)) from exc
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ManifestError("manifest entry %s has no valid size (a non-negative integer)" % path)
        if not isinstance(sha, str) or not _HEX64.match(sha):
            raise ManifestError("manifest entry %s has no valid sha256 (64 hex digits)" % path)
        if path in seen:
            raise ManifestError("manifest lists %s twice" % path)
        seen.add(path)
        files.append({"path": path, "size": size, "sha256": sha.lower()})
    return files


def make_unsigned(directory):
    """Build the unsigned manifest of a local directory (for tests and the operator)."""
    files = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            h = hashlib.sha256()
            with open(full, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
            files.append({"path": rel, "size": os.path.getsize(full), "sha256": h.hexdigest()})
    return files


def require_model_signing():
    """Raise ManifestError saying how to install model-signing when it could not be imported."""
    if MODEL_SIGNING_IMPORT_ERROR is not None:
        raise ManifestError(MISSING_LIBRARY % MODEL_SIGNING_IMPORT_ERROR)


def _binding(signature, signature_path):
    """The ``{model_id, revision, sizes}`` the signer recorded in the statement just verified, or None."""
    try:
        predicate = json.loads(signature.bundle.dsse_envelope.payload)["predicate"]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ManifestError("cannot read the signed statement of %s: %s" % (signature_path, exc)) from exc
    record = predicate.get(BINDING) if isinstance(predicate, dict) else None
    if record is None:
        return None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) and record.get(k)
                                               for k in ("model_id", "revision")):
        raise ManifestError("the signature %s has a malformed %r record (%r); re-sign the model with "
                            "scripts/model-sign" % (signature_path, BINDING, record))
    sizes = record.get("sizes", {})
    if not isinstance(sizes, dict) or not all(isinstance(v, str) and v.isdigit() and v.isascii()
                                              for v in sizes.values()):
        raise ManifestError("the signature %s has malformed sizes in its %r record; re-sign the model with "
                            "scripts/model-sign" % (signature_path, BINDING))
    return {"model_id": record["model_id"], "revision": record["revision"],
            "sizes": {path: int(size) for path, size in sizes.items()}}


def check_binding(binding, model_id, revision, signature_ref):
    """Refuse a signature that is not for ``model_id`` at ``revision``, naming what it is for and what was asked."""
    if binding is None:
        raise ManifestError("the signature %s does not say which model and revision it is for (it was made by an "
                            "older scripts/model-sign or by model_signing directly), so a mirror could pass off "
                            "another model or revision with it; re-sign the model with `scripts/model-sign sign "
                            "MODEL --private-key KEY --model-id %s --revision %s`; nothing was downloaded"
                            % (signature_ref, model_id or "ORG/NAME", revision))
    signed_for = "model %s revision %s" % (binding["model_id"], binding["revision"])
    if not model_id:
        raise ManifestError("model_id is empty, and signed mode checks that the signature is for the model asked "
                            "for: set model_id (and revision); the signature %s is for %s; nothing was downloaded"
                            % (signature_ref, signed_for))
    if (binding["model_id"], binding["revision"]) != (model_id, revision):
        raise ManifestError("the signature %s is for %s, but model_id %s revision %s was asked for: the mirror "
                            "serves another model or revision (or model_id/revision are wrong); nothing was "
                            "downloaded" % (signature_ref, signed_for, model_id, revision))


def verify_signature(signature_path, public_key_path, label=None):
    """Verify a key-mode bundle and return ``(files, serialization, binding)`` from its signed statement.

    ``files`` is a list of ``{path, size, sha256}``, the sizes signed beside the digests by
    scripts/model-sign. ``binding`` is the ``{model_id, revision}`` the signer recorded, or None (see
    check_binding; files have no size then). Messages name the signature ``label`` (where it came from),
    else its path.
    """
    label = label or signature_path
    require_model_signing()
    try:
        verifier = sign_ec_key.Verifier(pathlib.Path(public_key_path))
    except (OSError, ValueError, TypeError) as exc:
        raise ManifestError("cannot load the public key %s: %s; give public_key as a PEM EC P-256/384/521 "
                            "public key" % (public_key_path, exc)) from exc
    try:
        signature = sign_sigstore_pb.Signature.read(pathlib.Path(signature_path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestError("cannot read the signature %s: %s; it must be a bundle written by "
                            "`model_signing sign key`" % (label, exc)) from exc
    try:
        manifest = verifier.verify(signature)
    except Exception as exc:  # cryptography's InvalidSignature, ValueError on key mismatch
        raise ManifestError("the signature %s does not verify with the public key %s (%s: %s); the model "
                            "was not signed by that key or was altered; nothing was downloaded"
                            % (label, public_key_path, type(exc).__name__, exc or "bad signature")) from exc
    serialization = manifest.serialization_type
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise ManifestError("the signature uses %s/%s serialization; model_fetch needs per-file SHA-256 (the "
                            "default of `model_signing sign key`); re-sign the model without sharding or "
                            "other hash algorithms" % (serialization.get("method"), serialization.get("hash_type")))
    files = []
    for rd in manifest.resource_descriptors():
        try:
            safe_relpath(rd.identifier)
        except ValueError as exc:
            raise ManifestError(str(exc)) from exc
        files.append({"path": rd.identifier, "size": None, "sha256": rd.digest.digest_hex})
    if not files:
        raise ManifestError("the signed statement lists no files")
    binding = _binding(signature, label)
    if binding is not None:
        sizes = binding.pop("sizes")
        for f in files:
            if f["path"] not in sizes:
                raise ManifestError("the signature %s has no signed size for %s; re-sign the model with "
                                    "scripts/model-sign" % (label, f["path"]))
            f["size"] = sizes.pop(f["path"])
        if sizes:
            raise ManifestError("the signature %s signs sizes of files it does not list (%s); re-sign the model "
                                "with scripts/model-sign" % (label, ", ".join(sorted(sizes))))
    return files, serialization, binding


def verify_directory(directory, signature_path, public_key_path, serialization, ignore=()):
    """Run model_signing's verify over ``directory``; extra, missing or changed files fail."""
    require_model_signing()
    hcfg = hashing.Config().use_file_serialization(
        hashing_algorithm="sha256", allow_symlinks=bool(serialization.get("allow_symlinks", False)),
    )
    hcfg.add_ignored_paths(model_path=directory, paths=list(ignore))
    cfg = verifying.Config().use_elliptic_key_verifier(public_key=public_key_path).set_hashing_config(hcfg)
    try:
        cfg.verify(pathlib.Path(directory), pathlib.Path(signature_path))
    except ValueError as exc:
        raise ManifestError("%s does not match its signature after the download: %s; remove the extra or "
                            "changed files and run again" % (directory, exc)) from exc
