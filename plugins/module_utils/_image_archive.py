# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Docker image archives (``docker save``): what image one holds, and thin archives for update bundles (private).

A ``docker save`` archive has a ``manifest.json`` naming, for each image, its config file and its layer files in
the order of the config's ``rootfs.diff_ids``. The image id is the SHA-256 of the config: it names every layer by
its content (``diff_ids``), so an image loaded from the archive and pushed to any registry keeps that id (the
manifest the registry gives it points at the same config digest).

A *thin* archive leaves out the layer files that the image shares with an earlier image (same layer chain: the
same layers in the same order below). ``docker load`` reads a layer file only when the engine lacks that chain
(moby's image/tarexport/load.go asks the layer store by chain id first), so a thin archive loads wherever the
earlier image was loaded before; an update bundle carries only the layers that are new.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile


class ImageArchiveError(Exception):
    """The archive is not a docker save archive of one image, or cannot be written; the message says which."""


def chain_ids(diff_ids):
    """The layer chain ids of ``diff_ids`` (as the layer store names a layer with everything below it)."""
    out, chain = [], None
    for diff_id in diff_ids:
        chain = (diff_id if chain is None
                 else "sha256:" + hashlib.sha256(("%s %s" % (chain, diff_id)).encode()).hexdigest())
        out.append(chain)
    return out


def _read_member(tar, name, what):
    try:
        member = tar.getmember(name)
    except KeyError as exc:
        raise ImageArchiveError("%s has no %s" % (what, name)) from exc
    f = tar.extractfile(member)
    if f is None:
        raise ImageArchiveError("%s: %s is not a file" % (what, name))
    return f.read()


def read_archive(path):
    """What the archive holds: ``{id, repo_tags, diff_ids, chain_ids, layers, present_layers}``.

    ``layers`` are the archive paths ``manifest.json`` names, in order; ``present_layers`` says which of them
    the archive actually carries (all of them, unless it is thin).
    """
    try:
        with tarfile.open(path, "r:") as tar:
            names = set(tar.getnames())
            manifest = json.loads(_read_member(tar, "manifest.json", path))
            if not isinstance(manifest, list) or len(manifest) != 1:
                raise ImageArchiveError("%s must hold exactly one image (its manifest.json lists %s)"
                                        % (path, len(manifest) if isinstance(manifest, list) else "no list"))
            entry = manifest[0]
            config_bytes = _read_member(tar, entry["Config"], path)
    except (OSError, tarfile.TarError, ValueError, KeyError, TypeError) as exc:
        raise ImageArchiveError("%s is not a docker save archive: %s" % (path, exc)) from exc
    config = json.loads(config_bytes)
    image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    layers = list(entry.get("Layers") or [])
    if len(layers) != len(diff_ids):
        raise ImageArchiveError("%s: manifest.json names %d layers, the config %d" % (path, len(layers), len(diff_ids)))
    return {
        "id": image_id,
        "repo_tags": list(entry.get("RepoTags") or []),
        "diff_ids": diff_ids,
        "chain_ids": chain_ids(diff_ids),
        "layers": layers,
        "present_layers": [name in names for name in layers],
    }


def write_thin(src, dest, base_chain_ids):
    """Write to ``dest`` the archive ``src`` without the layer files whose chain is in ``base_chain_ids``.

    Returns ``{"id", "omitted": [diff ids], "kept": [diff ids]}``. ``dest`` is written to a temp file and renamed.
    """
    info = read_archive(src)
    base = set(base_chain_ids)
    drop = {layer for layer, chain in zip(info["layers"], info["chain_ids"], strict=False) if chain in base}
    tmp = "%s.tmp-%d" % (dest, os.getpid())
    try:
        with tarfile.open(src, "r:") as tin, tarfile.open(tmp, "w:", format=tarfile.PAX_FORMAT) as tout:
            for member in tin:
                if member.name in drop:
                    continue
                tout.addfile(member, tin.extractfile(member) if member.isfile() else None)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {
        "id": info["id"],
        "omitted": [d for d, layer in zip(info["diff_ids"], info["layers"], strict=False) if layer in drop],
        "kept": [d for d, layer in zip(info["diff_ids"], info["layers"], strict=False) if layer not in drop],
    }
