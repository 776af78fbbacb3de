"""A bytecode cache for modules imported from zip archives, on lab hosts only (the lab-host image loads it from
Python's sitecustomize).

Every Ansible module run sends its code as a zip (AnsiballZ) and Python compiles every file it imports from it,
`ansible.module_utils.basic` and its packages included, because zipimport has nowhere to keep bytecode. On a real
fleet each host spends its own CPU on that; in the lab every host is a container on the controller's two cores, so
the compiling of all hosts and the controller's own work queue up on the same CPUs. This keeps what Python compiled
under /var/cache (root only), keyed by the interpreter's bytecode version, the file's path inside the archive and a
SHA-256 of its source: a changed file is compiled again, never served stale. The code objects are given back the
path of the archive of this run, so tracebacks name the file as Python would. Anything that goes wrong falls back
to compiling, as without the cache, and so does a cache directory this user does not own alone (owned by another
user, or open to group or others): bytecode is only ever read from where only this user could have written it.
AUTOGLM_LAB_ZIPCACHE_DIR names another directory; an empty one turns it off.
"""

import hashlib
import importlib.util
import marshal
import os
import types
import zipimport

CACHE_DIR = os.environ.get("AUTOGLM_LAB_ZIPCACHE_DIR", "/var/cache/autoglm-lab-zipimport")
_compile_source = zipimport._compile_source


def _with_filename(code, filename):
    consts = tuple(_with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def cache_path(pathname, source):
    """Where the bytecode of `source`, imported as `pathname` (the archive's path, then the file's inside it), is."""
    inner = pathname.rpartition(".zip" + os.sep)[2]
    key = hashlib.sha256(importlib.util.MAGIC_NUMBER + inner.encode() + b"\0" + source).hexdigest()
    return os.path.join(CACHE_DIR, key[:2], key)


_usable = None


def usable():
    """Whether the cache directory is this user's alone (made here, 0700, when it is missing)."""
    global _usable
    if _usable is None:
        try:
            os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
            st = os.stat(CACHE_DIR)
            _usable = st.st_uid == os.geteuid() and not st.st_mode & 0o077
        except OSError:
            _usable = False
    return _usable


def compile_source(pathname, source):
    if not usable():
        return _compile_source(pathname, source)
    path = cache_path(pathname, source)
    try:
        with open(path, "rb") as f:
            # Trusted as Python trusts its own __pycache__: only this user can write below the directory.
            return _with_filename(marshal.load(f), pathname)  # noqa: S302
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = _compile_source(pathname, source)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "wb") as f:
            marshal.dump(code, f)
        os.replace(tmp, path)  # whole or not at all: a reader never sees a half-written file
    except OSError:
        pass
    return code


if CACHE_DIR:
    zipimport._compile_source = compile_source
