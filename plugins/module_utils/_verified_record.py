# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the last full verification of a model directory saw (private).

Hashing every byte of a model on every run costs a 9B model tens of seconds per host. After a run has
verified a directory (every file hashed, the signature checked over the whole directory), the record keeps
each file's size, mtime, ctime, inode and device with its digest, keyed by the signature (or manifest) it
was verified against. A later run trusts a recorded digest only for a file whose stat is still exactly the
recorded one; any write changes mtime and ctime (ctime cannot be set back), so changed bytes are hashed
again. The whole directory's listing must match too before a run may skip the final verification.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

from ansible_collections.autoglm.fleet.plugins.module_utils._fsutil import write_atomic

RECORD_VERSION = 1


def record_key(data):
    """The key of a record: the digest of the signature (or unsigned manifest) bytes it was verified against."""
    return hashlib.sha256(data).hexdigest()


def file_stat(path):
    """The stat fields a recorded digest is bound to (the entry itself, links not followed)."""
    st = os.lstat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def listing(dest, skip=()):
    """Every entry under ``dest`` but the top-level names in ``skip``, as {relative path: stat fields}."""
    out = {}
    for root, dirs, files in os.walk(dest, followlinks=False):
        rel_root = os.path.relpath(root, dest)
        if rel_root == ".":
            dirs[:] = [d for d in dirs if d not in skip]
            files = [f for f in files if f not in skip]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = name if rel_root == "." else "/".join([*rel_root.split(os.sep), name])
            out[rel] = file_stat(os.path.join(root, name))
    return out


class VerifiedRecord:
    """The record at ``path`` for a directory verified against the bytes whose digest is ``key``."""

    def __init__(self, path, key):
        self.path = path
        self.key = key
        self.entries = self._load()

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION or data.get("key") != self.key:
            return {}
        files = data.get("files")
        if not isinstance(files, dict):
            return {}
        return {k: v for k, v in files.items() if isinstance(v, dict) and isinstance(v.get("stat"), list)}

    def known_digest(self, rel, path):
        """The recorded digest of ``rel`` when ``path`` still has the recorded stat, else None."""
        entry = self.entries.get(rel)
        if entry is None or not isinstance(entry.get("sha256"), str):
            return None
        try:
            if file_stat(path) != entry["stat"]:
                return None
        except OSError:
            return None
        return entry["sha256"]

    def matches(self, dest, skip=()):
        """True when ``dest`` holds exactly the recorded entries, each with its recorded stat."""
        if not self.entries:
            return False
        try:
            return listing(dest, skip) == {rel: e["stat"] for rel, e in self.entries.items()}
        except OSError:
            return False

    def save(self, dest, digests, skip=()):
        """Record ``dest`` as verified now: its listing, with ``digests`` ({relative path: sha256})."""
        entries = {rel: {"stat": st, "sha256": digests.get(rel)} for rel, st in listing(dest, skip).items()}
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o755, exist_ok=True)
        data = {"version": RECORD_VERSION, "key": self.key, "dest": os.path.abspath(dest), "files": entries}
        write_atomic(self.path, json.dumps(data, sort_keys=True, indent=1) + "\n", mode=0o600)
        self.entries = entries

    def forget(self):
        """Remove the record (a run that changed the directory writes it again once it verified it)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.entries = {}
