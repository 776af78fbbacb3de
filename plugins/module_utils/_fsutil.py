# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's one way to write a file: new temp file, fsync, check, atomic rename (private).

``write_atomic`` serves both kinds of callers:

* a module that manages a file (``docker_daemon_config``) passes its AnsibleModule: the file common
  arguments (mode, owner, group, SELinux context, attributes; symbolic modes too) are applied, the old
  file is backed up with ``backup_local`` and replaced with ``atomic_move``, which keeps the old file's
  owner, mode and SELinux context unless they are given (the way community.crypto's ``_io.write_file``
  works);
* code that also runs outside Ansible (the download engine behind ``scripts/model-fetch``) passes no
  module and gets ``os.replace`` with a plain mode.

Either way the bytes go to a temp file created in the target's directory with ``O_EXCL | O_NOFOLLOW``
(a planted file or symlink is never written through), are fsynced, pass ``check`` if one is given, and
only then replace the target; a failure removes the temp file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat

# Flags for a file this collection creates: never an existing file, never through a symlink.
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def fsync_dir(path):
    """fsync a directory so a rename inside it survives a crash; quietly a no-op where that is not possible."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class UnsafePath(Exception):
    """A path below a root runs through a symbolic link (or a file where a directory must be)."""


def refuse_links_beneath(root, relpath):
    """Raise UnsafePath when a component of ``root/relpath`` below ``root`` is a symlink or, but for the
    last, not a directory. Missing components are fine (they will be created). ``root`` itself may be a link.
    """
    path = root
    parts = relpath.split("/")
    for depth, part in enumerate(parts, 1):
        path = os.path.join(path, part)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise UnsafePath("%s is a symbolic link" % path)
        if depth < len(parts) and not stat.S_ISDIR(mode):
            raise UnsafePath("%s is not a directory" % path)


def makedirs_beneath(root, relpath, mode=0o755):
    """``mkdir -p root/relpath`` that never goes through a symlink below ``root``; return the path."""
    path = root
    for part in relpath.split("/") if relpath else ():
        path = os.path.join(path, part)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, mode)
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise UnsafePath("%s is %s" % (path, "a symbolic link" if os.path.islink(path) else "not a directory"))
    return path


def create_new(path, mode=0o600):
    """Create ``path`` (it must not exist, and a symlink there is not followed); return a writable fd."""
    return os.open(path, NEW_FILE_FLAGS, mode)


def write_temp(directory, data, name="file", durable=True):
    """Write ``data`` (bytes) to a new 0600 temp file ``.<name>.<random>.tmp`` in ``directory``; return its path."""
    while True:
        tmp = os.path.join(directory, ".%s.%s.tmp" % (name, secrets.token_hex(6)))
        try:
            fd = create_new(tmp)
            break
        except FileExistsError:
            continue
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def write_atomic(path, data, mode=0o644, module=None, backup=False, check=None, durable=True):
    """Replace ``path`` with ``data`` (bytes or text) atomically; return the backup's path or None.

    ``mode`` is the mode of a file this call creates (with ``module``: unless the module's O(mode) says
    otherwise; an existing file keeps its attributes unless the module's file arguments change them).
    ``check(tmp_path)`` runs on the written temp file before it replaces anything and raises to refuse it.
    ``backup`` (needs ``module``) copies an existing ``path`` next to itself first. ``durable=False``
    skips the fsyncs, for files that are rewritten constantly and lose nothing when lost (resume state).
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    existed = os.path.lexists(path)
    file_args = None
    if module is not None:
        file_args = module.load_file_common_arguments(module.params, path=path)
        if file_args["mode"] is None and not existed:
            file_args["mode"] = mode
    tmp = write_temp(directory, data, os.path.basename(path), durable=durable)
    backup_file = None
    try:
        if module is None:
            os.chmod(tmp, mode)
        else:
            module.add_cleanup_file(tmp)  # a fail_json below removes it
            # a bad mode, owner or context fails here, on the temp file, before the target is touched
            module.set_fs_attributes_if_different(dict(file_args, path=tmp, attributes=None), False)
        if check is not None:
            check(tmp)
        if module is None:
            os.replace(tmp, path)
        else:
            if backup and existed:
                backup_file = module.backup_local(path) or None
            module.atomic_move(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(directory)
    if module is not None:
        # atomic_move gave the file the old one's attributes (or the umask's, when new): now the wanted ones
        module.set_fs_attributes_if_different(file_args, True)
    return backup_file
