# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a model consists of: signed statements (OpenSSF model_signing), unsigned manifests, sources.

Signed mode reads a ``model_signing sign key`` bundle, verifies its DSSE signature against the public
key BEFORE anything is downloaded and takes the file list and SHA-256 digests from the in-toto
statement's resources. After the files are placed, ``verify_directory`` runs the library's own verify
over the directory, so what sits on disk is exactly what was signed.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.autoglm.fleet.plugins.module_utils._download import Source, safe_relpath

MISSING_LIBRARY = ("the model_signing library could not be imported (%s); install model-signing and pyopenssl "
                   "in the runtime venv (pip install model-signing pyopenssl), or set require_signature: false "
                   "with an unsigned manifest")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


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
    import hashlib

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


def _import_model_signing():
    try:
        import pathlib

        from model_signing import hashing, verifying
        from model_signing._signing import sign_ec_key, sign_sigstore_pb
    except Exception as exc:  # ImportError, and model_signing's own import errors without pyopenssl
        raise ManifestError(MISSING_LIBRARY % exc) from exc
    return pathlib, hashing, verifying, sign_ec_key, sign_sigstore_pb


def verify_signature(signature_path, public_key_path):
    """Verify a key-mode bundle and return ``(files, serialization)`` from its signed statement.

    ``files`` is a list of ``{path, size: None, sha256}`` (the statement carries no sizes; the engine
    learns them from the sources).
    """
    mods = _import_model_signing()
    pathlib, sign_ec_key, sign_sigstore_pb = mods[0], mods[3], mods[4]
    try:
        verifier = sign_ec_key.Verifier(pathlib.Path(public_key_path))
    except (OSError, ValueError, TypeError) as exc:
        raise ManifestError("cannot load the public key %s: %s; give public_key as a PEM EC P-256/384/521 "
                            "public key" % (public_key_path, exc)) from exc
    try:
        signature = sign_sigstore_pb.Signature.read(pathlib.Path(signature_path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestError("cannot read the signature %s: %s; it must be a bundle written by "
                            "`model_signing sign key`" % (signature_path, exc)) from exc
    try:
        manifest = verifier.verify(signature)
    except Exception as exc:  # cryptography's InvalidSignature, ValueError on key mismatch
        raise ManifestError("the signature %s does not verify with the public key %s (%s: %s); the model "
                            "was not signed by that key or was altered; nothing was downloaded"
                            % (signature_path, public_key_path, type(exc).__name__, exc or "bad signature")) from exc
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
    return files, serialization


def verify_directory(directory, signature_path, public_key_path, serialization, ignore=()):
    """Run model_signing's verify over ``directory``; extra, missing or changed files fail."""
    pathlib, hashing, verifying = _import_model_signing()[:3]
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


SIGNATURE_COPY = "model.sig"


def _load_bytes(ref, sources, engine, what):
    """``ref`` is an absolute local path, or a name read from the first source that has it."""
    from ansible_collections.autoglm.fleet.plugins.module_utils._download import RangeFault, fetch_small

    if os.path.isabs(ref):
        try:
            with open(ref, "rb") as f:
                return f.read(), ref
        except OSError as exc:
            raise ManifestError("cannot read the %s %s: %s" % (what, ref, exc.strerror or exc)) from exc
    errors = []
    for s in sources:
        try:
            return engine.retry(lambda s=s: fetch_small(engine.transport, s, ref)), s.location(ref)
        except (RangeFault, OSError, ValueError) as exc:
            errors.append("%s: %s" % (s.describe(), exc))
    raise ManifestError("no source has the %s %s (%s); publish it beside the model or give an absolute path"
                        % (what, ref, "; ".join(errors)))


def fetch_model(dest, sources, options, model_id="", revision="main", public_key=None, signature="model.sig",
                manifest="manifest.json", require_signature=True, check_mode=False, log=None):
    """Plan, verify and fetch a model into ``dest``; the shared core of the module and the CLI.

    Returns a result dict: ``changed``, ``files`` (per file), ``totals``, ``signed``, ``dest`` and,
    when a signature was used, ``signature`` (its copy in ``dest``).
    """
    import tempfile
    import time

    from ansible_collections.autoglm.fleet.plugins.module_utils._download import PARTIAL_DIR, Engine, summarize

    t0 = time.monotonic()
    srcs = build_sources(sources, model_id, revision)
    engine = Engine(dest, srcs, options)
    signed = public_key is not None
    sig_bytes = serialization = None
    if signed:
        _import_model_signing()
        sig_bytes, sig_origin = _load_bytes(signature, srcs, engine, "signature")
        with tempfile.NamedTemporaryFile(suffix=".sig", delete=False) as tmp:
            tmp.write(sig_bytes)
        try:
            files, serialization = verify_signature(tmp.name, public_key)
        finally:
            os.unlink(tmp.name)
    elif require_signature:
        raise ManifestError("no public_key given and require_signature is true; give public_key (and the "
                            "signature), or set require_signature: false (--allow-unsigned on the CLI) to accept an "
                            "unsigned manifest")
    else:
        data, sig_origin = _load_bytes(manifest, srcs, engine, "manifest")
        files = parse_unsigned(data)
    if log:
        log("%s: %d files from %s" % ("verified signature" if signed else "UNSIGNED manifest", len(files), sig_origin))

    present, planned = engine.plan(files)
    sig_dest = os.path.join(dest, SIGNATURE_COPY)
    sig_changed = False
    if signed:
        try:
            with open(sig_dest, "rb") as f:
                sig_changed = f.read() != sig_bytes
        except OSError:
            sig_changed = True
    result = {"dest": dest, "signed": signed, "unsigned_manifest": not signed, "source_of_list": sig_origin}
    if check_mode:
        need = sum(p["size"] - p["resumable_bytes"] for p in planned)
        would = [{"path": p["path"], "size": p["size"], "status": "would_fetch",
                  "bytes": p["size"] - p["resumable_bytes"], "resumed_bytes": p["resumable_bytes"],
                  "seconds": 0.0, "throughput": 0, "source": p["order"][0].url}
                 for p in planned]
        by_path = {r["path"]: r for r in present + would}
        result["files"] = [by_path[f["path"]] for f in files]
        result["totals"] = dict(summarize(result["files"]), bytes=need, seconds=0.0, throughput=0)
        result["changed"] = bool(planned) or sig_changed
        return result

    engine.check_space(planned)
    fetched = engine.fetch(planned) if planned else []
    engine.cleanup()
    if signed:
        if sig_changed:
            tmp = sig_dest + ".tmp"
            with open(tmp, "wb") as f:
                f.write(sig_bytes)
            os.replace(tmp, sig_dest)
        verify_directory(dest, sig_dest, public_key, serialization, ignore=[SIGNATURE_COPY, PARTIAL_DIR])
        result["signature"] = sig_dest
    by_path = {r["path"]: r for r in present + fetched}
    result["files"] = [by_path[f["path"]] for f in files]
    secs = max(time.monotonic() - t0, 1e-6)
    totals = summarize(result["files"])
    totals.update(seconds=round(secs, 3), throughput=int(totals["bytes"] / secs))
    result["totals"] = totals
    result["changed"] = bool(fetched) or bool(sig_changed)
    return result
