# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fetch a model: verify what to fetch, plan, download, place and verify again (private).

The shared core of the ``autoglm.fleet.model_fetch`` module and ``scripts/model-fetch``. What a model
consists of (signatures, manifests, sources) is ``_model_manifest``; moving bytes is ``_download``.
"""

from __future__ import annotations

import os
import tempfile
import time

from ansible_collections.autoglm.fleet.plugins.module_utils._download import (
    PARTIAL_DIR,
    Engine,
    RangeFault,
    fetch_small,
    summarize,
)
from ansible_collections.autoglm.fleet.plugins.module_utils._fsutil import write_atomic, write_temp
from ansible_collections.autoglm.fleet.plugins.module_utils._model_manifest import (
    ManifestError,
    build_sources,
    check_binding,
    parse_unsigned,
    require_model_signing,
    verify_directory,
    verify_signature,
)
from ansible_collections.autoglm.fleet.plugins.module_utils._verified_record import VerifiedRecord, record_key

SIGNATURE_COPY = "model.sig"


def _load_bytes(ref, sources, engine, what):
    """``ref`` is an absolute local path, or a name read from the first source that has it."""
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
                manifest="manifest.json", require_signature=True, check_mode=False, log=None, verified_record=None):
    """Plan, verify and fetch a model into ``dest``; the shared core of the module and the CLI.

    ``verified_record`` (a path, or None to hash every byte on every run): the record of the last full
    verification (``_verified_record``); a file whose stat is unchanged since is not hashed again, and when
    nothing was fetched and the whole directory is as recorded, the final verification is not repeated.

    Returns a result dict: ``changed``, ``files`` (per file), ``totals``, ``signed``, ``dest``,
    ``verified`` (``hashed``: every file hashed in this run, or ``record``: every file as last verified)
    and, when a signature was used, ``signature`` (its copy in ``dest``).
    """
    t0 = time.monotonic()
    if verified_record:
        record_path, dest_path = os.path.abspath(verified_record), os.path.abspath(dest)
        if record_path == dest_path or record_path.startswith(dest_path.rstrip("/") + "/"):
            raise ManifestError("verified_record (%s) must be outside dest (%s): a file in dest is not part of the "
                                "model, and its verification would fail" % (verified_record, dest))
    srcs = build_sources(sources, model_id, revision)
    engine = Engine(dest, srcs, options)
    signed = public_key is not None
    sig_bytes = serialization = None
    if signed:
        require_model_signing()
        sig_bytes, sig_origin = _load_bytes(signature, srcs, engine, "signature")
        tmp = write_temp(tempfile.gettempdir(), sig_bytes, "model-sig-check", durable=False)
        try:
            files, serialization, binding = verify_signature(tmp, public_key, label=sig_origin)
        finally:
            os.unlink(tmp)
        check_binding(binding, model_id, revision, sig_origin)
    elif require_signature:
        raise ManifestError("no public_key given and require_signature is true; give public_key (and the "
                            "signature), or set require_signature: false (--allow-unsigned on the CLI) to accept an "
                            "unsigned manifest")
    else:
        data, sig_origin = _load_bytes(manifest, srcs, engine, "manifest")
        files = parse_unsigned(data)
    record = VerifiedRecord(verified_record, record_key(sig_bytes if signed else data)) if verified_record else None
    if log:
        log("%s: %d files from %s" % ("verified signature" if signed else "UNSIGNED manifest", len(files), sig_origin))

    if signed:
        engine.refuse_links(SIGNATURE_COPY)
    from_record = []

    def known(rel, path):
        digest = record.known_digest(rel, path)
        if digest is not None:
            from_record.append(rel)
        return digest

    present, planned = engine.plan(files, check_mode=check_mode, known=known if record is not None else None)
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

    skip = (SIGNATURE_COPY, PARTIAL_DIR)
    # Nothing to fetch, every file as the last full verification saw it and nothing else in dest: that
    # verification stands, and no byte is hashed again.
    as_recorded = (record is not None and not planned and not sig_changed and len(from_record) == len(files)
                   and record.matches(dest, skip))
    if record is not None and not as_recorded:
        record.forget()  # written again below, once this run has verified the directory
    engine.check_space(planned)
    fetched = engine.fetch(planned) if planned else []
    engine.cleanup()
    if signed:
        if sig_changed:
            write_atomic(sig_dest, sig_bytes, mode=0o644)
        if not as_recorded:
            verify_directory(dest, sig_dest, public_key, serialization, ignore=list(skip))
        result["signature"] = sig_dest
    if record is not None and not as_recorded:
        record.save(dest, {f["path"]: f["sha256"].lower() for f in files}, skip)
    result["verified"] = "record" if as_recorded else "hashed"
    by_path = {r["path"]: r for r in present + fetched}
    result["files"] = [by_path[f["path"]] for f in files]
    secs = max(time.monotonic() - t0, 1e-6)
    totals = summarize(result["files"])
    totals.update(seconds=round(secs, 3), throughput=int(totals["bytes"] / secs))
    result["totals"] = totals
    result["changed"] = bool(fetched) or bool(sig_changed)
    return result
