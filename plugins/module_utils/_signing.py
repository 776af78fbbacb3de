# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's one signature mode: OpenSSF model_signing's key mode (EC P-256/384/521, DSSE) (private).

Models (``scripts/model-sign``, ``_model_manifest``) and offline bundles (``_bundle_manifest``) are signed and
verified here, with the same keys (``scripts/model-sign keygen``) and the same signature file format (a sigstore
bundle holding an in-toto statement). A statement lists resources with their SHA-256 and may carry a record of
ours in its predicate (``autoglm_model``, ``autoglm_bundle``): the record says what the signature is for, so a
signature of one kind is never taken for the other.

Errors are ``KeyModeError`` with a ``stage`` (``key``, ``read``, ``verify``, ``statement``) and the library's own
reason, so each caller words its message for its user; none of them carries key material or a password.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pathlib

try:
    from cryptography.hazmat.primitives import serialization
    from model_signing import manifest as ms_manifest
    from model_signing._hashing.hashing import Digest
    from model_signing._signing import sign_ec_key, sign_sigstore_pb, signing
except Exception as exc:  # ImportError, and model_signing's own import errors without pyopenssl
    IMPORT_ERROR = exc
else:
    IMPORT_ERROR = None


class KeyModeError(Exception):
    """A key-mode signature could not be made or verified; ``stage`` says where, ``reason`` the library's why."""

    def __init__(self, stage, reason):
        super().__init__("%s: %s" % (stage, reason))
        self.stage = stage
        self.reason = reason


def _reason(exc):
    return "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__


def verify_statement(signature_path, public_key_path):
    """Verify the key-mode signature at ``signature_path`` with the PEM public key at ``public_key_path``.

    Returns ``(manifest, predicate)``: model_signing's Manifest of the signed resources and the statement's
    predicate (a dict). Raises KeyModeError: ``key`` (the public key cannot be used), ``read`` (not a signature
    file), ``verify`` (another key, or changed since signing), ``statement`` (the signed statement is unreadable).
    """
    try:
        verifier = sign_ec_key.Verifier(pathlib.Path(public_key_path))
    except (OSError, ValueError, TypeError) as exc:
        raise KeyModeError("key", _reason(exc)) from exc
    try:
        signature = sign_sigstore_pb.Signature.read(pathlib.Path(signature_path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyModeError("read", _reason(exc)) from exc
    try:
        # the library prints a warning on stdout for old signatures; a module's stdout is its JSON result
        with contextlib.redirect_stdout(io.StringIO()):
            manifest = verifier.verify(signature)
    except Exception as exc:  # cryptography's InvalidSignature, ValueError on key mismatch
        raise KeyModeError("verify", "%s: %s" % (type(exc).__name__, exc or "bad signature")) from exc
    try:
        predicate = json.loads(signature.bundle.dsse_envelope.payload)["predicate"]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise KeyModeError("statement", _reason(exc)) from exc
    if not isinstance(predicate, dict):
        raise KeyModeError("statement", "the predicate is not an object")
    return manifest, predicate


def sign_payload(payload, private_key_path, password=None):
    """Sign a model_signing ``signing.Payload`` with the PEM EC private key at ``private_key_path``; the
    signature file's text. ``password`` (bytes) opens an encrypted key. Raises KeyModeError(``key``)."""
    try:
        signer = sign_ec_key.Signer(pathlib.Path(private_key_path), password)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyModeError("key", _reason(exc)) from exc
    return signer.sign(payload).bundle.to_json()


def sign_digests(name, digests, record_name, record, private_key_path, password=None):
    """Sign a statement over ``digests`` (``{resource name: sha256 hex}``) with ``record`` under
    ``record_name`` in its predicate; the signature file's text (per-file SHA-256 serialization, like
    ``model_signing sign key`` writes)."""
    files = ms_manifest.SerializationType.from_args({"method": "files", "hash_type": "sha256", "allow_symlinks": False})
    items = [files.new_item(path, Digest("sha256", bytes.fromhex(sha))) for path, sha in sorted(digests.items())]
    payload = signing.Payload(ms_manifest.Manifest(name, items, files))
    payload.statement.pb.predicate.update({record_name: record})
    return sign_payload(payload, private_key_path, password)


def key_id(key_path, password=None, private=False):
    """The key id model_signing records in a signature (SHA-256, hex, of the public key's PEM
    SubjectPublicKeyInfo), of the public key at ``key_path`` or of the private key's public half."""
    try:
        with open(key_path, "rb") as f:
            pem = f.read()
        if private:
            public = serialization.load_pem_private_key(pem, password).public_key()
        else:
            public = serialization.load_pem_public_key(pem)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyModeError("key", _reason(exc)) from exc
    return hashlib.sha256(public.public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
