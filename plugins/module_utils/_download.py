# Copyright (c) autoglm.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parallel, resumable, verifying download engine for model weights (standard library only).

Layout on disk, for every file ``F`` of the model under ``dest``:

* ``dest/.partial/F.part``  - the bytes, written with ``os.pwrite`` at their offsets;
* ``dest/.partial/F.state`` - JSON sidecar: size, expected digest, chunk size and the indices of the
  finished chunks (rewritten atomically after every finished chunk, so a SIGKILL loses at most the
  chunks that were in flight);
* ``dest/F``                - appears only after the whole file hashed to the expected SHA-256; it is
  fsynced, renamed into place and the directory fsynced.

Hashing cursor: chunks may finish out of order. A per-file cursor waits for chunk ``n``, reads it back
from the ``.part`` file with ``os.pread`` (the bytes were written moments ago and are still in page
cache, so there is no second disk read) and feeds it to SHA-256, then moves to ``n + 1``. Memory use
is bounded by the read block size, not the chunk size. A resumed file hashes its already-finished
prefix exactly once, as the cursor walks over it. A server that ignores ``Range`` is read as one
stream that is written and hashed inline.

Drop-behind: once the cursor has hashed a chunk nothing reads it again, so the cursor starts its
writeback at once and, a few chunks later, drops its (by then clean) pages from the page cache
(``posix_fadvise(DONTNEED)``, which never drops a dirty page). The final ``fsync`` then has little left
to write instead of the whole file, the page cache a download occupies stays bounded by the chunks in
flight instead of growing with the model (no reclaim storm on a host fetching hundreds of GB), and the
kernel reuses the same pages for the next chunks instead of touching new memory. The cost: a placed
model is not left in the page cache, so whatever loads it next reads it from disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import posixpath
import random
import shutil
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.autoglm.fleet.plugins.module_utils._fsutil import (
    UnsafePath,
    fsync_dir,
    makedirs_beneath,
    refuse_links_beneath,
    write_atomic,
)

BLOCK = 1024 * 1024
PARTIAL_DIR = ".partial"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
STATE_VERSION = 1


class FetchError(Exception):
    """A fault the user must see: names the file, the source and what went wrong."""


class RangeFault(Exception):
    """A fault while fetching from one source (bad status, wrong Content-Range, short body...).

    Retried with backoff, unless ``final`` (retrying cannot help: e.g. a redirect that is refused).
    """

    def __init__(self, msg, status=None, final=False):
        super().__init__(msg)
        self.status = status
        self.final = final


class NoRangeSupport(Exception):
    """The server answered a ranged request with the whole body (200)."""


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------

SOURCE_KINDS = ("http", "hf", "modelscope", "file")


class Source:
    """One place a model can be read from; builds the URL (or local path) of a file in the model."""

    def __init__(self, kind, url, model_id="", revision="main"):
        if kind not in SOURCE_KINDS:
            raise ValueError("source type %r is not one of %s" % (kind, ", ".join(SOURCE_KINDS)))
        self.kind = kind
        self.url = url.rstrip("/")
        self.model_id = model_id
        self.revision = revision or "main"
        if kind == "file":
            parsed = urllib.parse.urlparse(url)
            self.root = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else url
        elif urllib.parse.urlparse(url).scheme not in ("http", "https"):
            raise ValueError("source URL %r must start with http:// or https://" % url)

    def location(self, path):
        """URL (or filesystem path for ``file``) of ``path``, a relative POSIX path in the model."""
        q = urllib.parse.quote
        if self.kind == "file":
            return os.path.join(self.root, *path.split("/"))
        if self.kind == "http":
            return "%s/%s" % (self.url, q(path))
        if self.kind == "hf":
            return "%s/%s/resolve/%s/%s" % (self.url, self.model_id, q(self.revision, safe=""), q(path))
        # ModelScope file API (the one modelscope's own downloader uses).
        return "%s/api/v1/models/%s/repo?%s" % (
            self.url,
            self.model_id,
            urllib.parse.urlencode({"Revision": self.revision, "FilePath": path}),
        )

    def describe(self):
        return "%s source %s" % (self.kind, self.url)

    def to_dict(self):
        return {"type": self.kind, "url": self.url}


def safe_relpath(path):
    """Reject manifest paths that would escape the destination directory."""
    if not path or path.startswith("/") or "\\" in path:
        raise ValueError("unsafe path %r in the manifest" % path)
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == PARTIAL_DIR:
        raise ValueError("unsafe path %r in the manifest" % path)
    return path


# --------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket shared by every connection; ``rate`` bytes per second (0 or None: unlimited)."""

    def __init__(self, rate):
        self.rate = float(rate or 0)
        self.lock = threading.Lock()
        self.burst = self.rate / 4  # at most a quarter second of bytes ahead
        self.allowance = 0.0
        self.stamp = time.monotonic()

    def take(self, n):
        if self.rate <= 0:
            return
        with self.lock:
            now = time.monotonic()
            self.allowance = min(self.burst, self.allowance + (now - self.stamp) * self.rate)
            self.stamp = now
            self.allowance -= n
            wait = -self.allowance / self.rate if self.allowance < 0 else 0
        if wait > 0:
            time.sleep(wait)


def origin(url):
    """``(scheme, host, port)`` of ``url``, the default port filled in: what credentials are tied to."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(
        parts.scheme.lower())


class Transport:
    """HTTP(S) with one keep-alive connection per thread and host, redirects, headers and CA bundle.

    The token and every configured header are credentials of the source's origin: they go only to
    requests for that scheme, host and port, and are dropped for the rest of a redirect chain as soon as
    it leaves them. A redirect from https to anything but https is refused.
    """

    def __init__(self, headers=None, token=None, ca_path=None, timeout=30.0, limiter=None, max_redirects=5):
        self.headers = dict(headers or {})
        if token:
            self.headers["Authorization"] = "Bearer %s" % token
        self.timeout = timeout
        self.limiter = limiter or RateLimiter(0)
        self.max_redirects = max_redirects
        self.ssl_context = ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
        self.local = threading.local()

    def _conn(self, scheme, netloc, fresh=False):
        conns = getattr(self.local, "conns", None)
        if conns is None:
            conns = self.local.conns = {}
        key = (scheme, netloc)
        if fresh and key in conns:
            conns.pop(key).close()
        if key not in conns:
            if scheme == "https":
                conns[key] = http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self.ssl_context)
            else:
                conns[key] = http.client.HTTPConnection(netloc, timeout=self.timeout)
        return conns[key]

    def _discard(self, scheme, netloc):
        c = getattr(self.local, "conns", {}).pop((scheme, netloc), None)
        if c is not None:
            c.close()

    def drop(self, url):
        p = urllib.parse.urlsplit(url)
        self._discard(p.scheme, p.netloc)

    def close(self):
        for c in getattr(self.local, "conns", {}).values():
            c.close()
        self.local.conns = {}

    def request(self, url, extra=None, method="GET"):
        """Send a request and return ``(response, final_url)``; follows redirects.

        ``extra`` (e.g. Range) goes with every hop; the credentials only to the origin of ``url``.
        """
        credentials = dict(self.headers)
        start = origin(url)
        for _hop in range(self.max_redirects + 1):
            p = urllib.parse.urlsplit(url)
            target = urllib.parse.urlunsplit(("", "", p.path or "/", p.query, ""))
            if origin(url) != start:
                credentials = {}  # never hand a token, key, cookie or custom header to another origin
            headers = dict(credentials)
            headers.update(extra or {})
            for attempt in (0, 1):
                conn = self._conn(p.scheme, p.netloc, fresh=attempt == 1)
                try:
                    conn.request(method, target, headers=headers)
                    resp = conn.getresponse()
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    # A kept-alive connection the server closed meanwhile: retry once on a fresh one.
                    if attempt == 1:
                        self._discard(p.scheme, p.netloc)
                        raise
                except BaseException:
                    # Anything else (refused, timed out, TLS) leaves http.client mid-request: a later
                    # retry on the same object would fail with CannotSendRequest. Never reuse it.
                    self._discard(p.scheme, p.netloc)
                    raise
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                resp.read()
                if not location:
                    raise RangeFault("HTTP %d without a Location header" % resp.status)
                target_url = urllib.parse.urljoin(url, location)
                scheme = urllib.parse.urlsplit(target_url).scheme.lower()
                if p.scheme == "https" and scheme != "https":
                    raise RangeFault("redirected from %s to %s: a redirect from https to plain %s is refused"
                                     % (url, target_url, scheme or "text"), final=True)
                if scheme not in ("http", "https"):
                    raise RangeFault("redirected from %s to %s, which is not an http(s) URL" % (url, target_url),
                                     final=True)
                url = target_url
                continue
            return resp, url
        raise RangeFault("more than %d redirects" % self.max_redirects)


def _is_html(resp):
    return "text/html" in (resp.getheader("Content-Type") or "").lower()


def parse_content_range(value):
    """``bytes a-b/total`` -> (a, b, total or None); a range that cannot be (``0-0/-5``, ``5-4/10``) is a fault."""
    try:
        unit, rest = value.strip().split(" ", 1)
        span, total = rest.split("/", 1)
        a, b = span.split("-", 1)
        if unit.lower() != "bytes":
            raise ValueError(value)
        a, b, total = int(a), int(b), (None if total == "*" else int(total))
    except (AttributeError, ValueError) as exc:
        raise RangeFault("malformed Content-Range %r" % value) from exc
    if a < 0 or b < a or (total is not None and b >= total):
        raise RangeFault("impossible Content-Range %r" % value)
    return a, b, total


def probe(transport, source, path):
    """Return ``(size, ranges_supported)`` of ``path`` at ``source``; raise RangeFault/OSError on faults."""
    loc = source.location(path)
    if source.kind == "file":
        st = os.stat(loc)
        return st.st_size, True
    resp, _final = transport.request(loc, {"Range": "bytes=0-0"})
    try:
        if resp.status == 206:
            a, b, total = parse_content_range(resp.getheader("Content-Range"))
            if (a, b) != (0, 0) or total is None:
                raise RangeFault("answered the probe with Content-Range %r" % resp.getheader("Content-Range"))
            return total, True
        if resp.status == 200:
            if _is_html(resp):
                raise RangeFault("served an HTML page (Content-Type %s) instead of the file"
                                 % resp.getheader("Content-Type"))
            length = resp.getheader("Content-Length")
            if length is None:
                raise RangeFault("ignores Range and sends no Content-Length")
            if not length.strip().isdigit():
                raise RangeFault("sent Content-Length %r" % length)
            return int(length), False
        if resp.status == 416:  # empty file
            return 0, True
        raise RangeFault("answered HTTP %d %s" % (resp.status, resp.reason), resp.status)
    finally:
        transport.drop(loc)  # the rest of a 200 body is not wanted; never reuse that connection


def fetch_small(transport, source, path, limit=64 * 1024 * 1024):
    """Read a small file (a manifest or a signature) from a source, whole; more than ``limit`` bytes is a fault."""
    loc = source.location(path)
    if source.kind == "file":
        with open(loc, "rb") as f:
            body = f.read(limit + 1)
    else:
        resp, _final = transport.request(loc)
        try:
            body = resp.read(limit + 1)
            if resp.status != 200:
                raise RangeFault("answered HTTP %d %s" % (resp.status, resp.reason), resp.status)
        finally:
            if len(body) > limit:
                transport.drop(loc)
    if len(body) > limit:
        raise RangeFault("has more than %d bytes for %s, which cannot be a manifest or a signature" % (limit, path))
    return body


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------


class Options:
    def __init__(self, connections=8, parallel_files=4, chunk_size=16 * 1024 * 1024, retries=5,
                 backoff=0.5, backoff_max=30.0, timeout=30.0, rate_limit=0, headers=None, token=None,
                 ca_path=None, progress=None, warn=None):
        self.connections = max(1, int(connections))
        self.parallel_files = max(1, int(parallel_files))
        self.chunk_size = max(BLOCK // 16, int(chunk_size))
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.timeout = float(timeout)
        self.rate_limit = rate_limit or 0
        self.headers = headers or {}
        self.token = token
        self.ca_path = ca_path
        self.progress = progress  # callable(path, done_bytes, size) or None
        self.warn = warn  # callable(message) for what the user should know but is no failure, or None


def backoff_delay(attempt, base, cap, rng=random):
    """Exponential backoff with full jitter: ``rng.uniform(0, min(cap, base * 2**attempt))``."""
    return rng.uniform(0, min(cap, base * (2 ** attempt)))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


_tls = threading.local()


def _buffer():
    """A per-thread 1 MiB buffer that responses are read into (no allocation per block)."""
    view = getattr(_tls, "view", None)
    if view is None:
        view = _tls.view = memoryview(bytearray(BLOCK))
    return view


# Chunks the cursor keeps in the page cache after hashing them before dropping them: their writeback
# (started when they were hashed) has had that long to finish, and a page still under writeback is
# simply left in place.
DROP_LAG = 2


def _drop_behind(fd, offset, length):
    """Start writeback of ``[offset, offset + length)`` and drop its pages that are already clean.

    A hint only: dirty pages are never dropped (so no byte is lost), and where the call is missing or
    refused nothing changes but memory use.
    """
    if length > 0 and hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _pwrite_all(fd, data, offset):
    while len(data):
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


class FileJob:
    """State of one file: its part file, its finished chunks and its hashing cursor."""

    def __init__(self, dest, path, size, sha256, chunk_size):
        self.dest = dest
        self.path = path
        self.size = size
        self.sha256 = sha256.lower()
        self.chunk_size = chunk_size
        self.final = os.path.join(dest, *path.split("/"))
        base = os.path.join(dest, PARTIAL_DIR, *path.split("/"))
        self.part = base + ".part"
        self.state_path = base + ".state"
        self.nchunks = max(1, -(-size // chunk_size)) if size else 0
        self.done = set()
        self.lock = threading.Condition()
        self.fd = None
        self.downloaded = 0  # bytes received over the network (or copied) in this run
        self.resumed_bytes = 0

    def span(self, i):
        start = i * self.chunk_size
        return start, min(self.size, start + self.chunk_size) - 1

    def _read_state(self):
        """The state sidecar as a dict; None when there is none; ValueError saying why it is unusable."""
        try:
            with os.fdopen(os.open(self.state_path, os.O_RDONLY | NOFOLLOW), "rb") as f:
                st = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError("unreadable: %s" % exc) from exc
        if not isinstance(st, dict):
            raise ValueError("not a JSON object")
        done = st.get("done", [])
        if not isinstance(done, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in done):
            raise ValueError("'done' is not a list of chunk numbers: %r" % (done,))
        return st

    def load_state(self, warn=None, discard=True):
        """Reuse finished chunks of an earlier run when size, digest and chunk size still match.

        A state for another size, digest or chunk size is stale (the model changed) and quietly not used.
        A state this engine cannot have written is invalid: ``warn`` is told, it is not used and (with
        ``discard``; not in check mode) removed, so the file is fetched again instead of every run failing.
        """
        self.done = set()
        try:
            st = self._read_state()
            if (st is not None and st.get("version") == STATE_VERSION and st.get("size") == self.size
                    and st.get("sha256") == self.sha256 and st.get("chunk_size") == self.chunk_size
                    and os.path.exists(self.part)):
                outside = [i for i in st["done"] if not 0 <= i < self.nchunks]
                if outside:
                    raise ValueError("chunk numbers %s are outside the file's %d chunks" % (outside, self.nchunks))
                self.done = set(st["done"])
        except ValueError as exc:
            if warn is not None:
                warn("%s: the resume state %s is invalid (%s); it was discarded and the file is fetched again"
                     % (self.path, self.state_path, exc))
            if discard:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.state_path)
        self.resumed_bytes = sum(self.span(i)[1] - self.span(i)[0] + 1 for i in self.done)
        return bool(self.done)

    def reset(self):
        self.done = set()
        self.resumed_bytes = 0
        for p in (self.part, self.state_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

    def open(self):
        makedirs_beneath(self.dest, posixpath.dirname(PARTIAL_DIR + "/" + self.path))
        self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o600)
        if os.fstat(self.fd).st_size != self.size:
            os.ftruncate(self.fd, self.size)
            if self.size and hasattr(os, "posix_fallocate"):
                # reserve the blocks up front: no ENOSPC mid-file, less fragmentation (ignored where the
                # filesystem has no fallocate, e.g. some NFS)
                with contextlib.suppress(OSError):
                    os.posix_fallocate(self.fd, 0, self.size)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def save_state(self):
        # not fsynced: the chunks it lists are not either; after a crash the digest decides what is kept
        write_atomic(self.state_path, json.dumps({
            "version": STATE_VERSION, "size": self.size, "sha256": self.sha256,
            "chunk_size": self.chunk_size, "done": sorted(self.done),
        }), mode=0o600, durable=False)

    def mark_done(self, i):
        with self.lock:
            self.done.add(i)
            self.save_state()
            self.lock.notify_all()


class Engine:
    def __init__(self, dest, sources, options):
        self.dest = dest
        self.sources = list(sources)
        self.opts = options
        self.transport = Transport(options.headers, options.token, options.ca_path, options.timeout,
                                   RateLimiter(options.rate_limit))
        self.abort = threading.Event()

    def retry(self, fn):
        """Call ``fn`` with up to ``retries`` retries (backoff with jitter) on transient faults.

        A 4xx answer (other than 408 and 429) is final: the file is not on that source.
        """
        attempt = 0
        while True:
            try:
                return fn()
            except (RangeFault, OSError, http.client.HTTPException) as exc:
                code = getattr(exc, "status", None)
                final = getattr(exc, "final", False) or (code is not None and 400 <= code < 500
                                                         and code not in (408, 429))
                if final or attempt >= self.opts.retries:
                    raise
                time.sleep(backoff_delay(attempt, self.opts.backoff, self.opts.backoff_max))
                attempt += 1

    # -- a single range ----------------------------------------------------------------------

    def _fetch_range(self, job, source, start, end, count):
        """Fetch bytes [start, end] of ``job`` into its part file; raise RangeFault/OSError on faults."""
        loc = source.location(job.path)
        if source.kind == "file":
            with open(loc, "rb") as f:
                pos = start
                while pos <= end:
                    block = os.pread(f.fileno(), min(BLOCK, end - pos + 1), pos)
                    if not block:
                        raise RangeFault("is shorter than expected (ends at byte %d)" % pos)
                    self.transport.limiter.take(len(block))
                    os.pwrite(job.fd, block, pos)
                    pos += len(block)
                    count(len(block))
            return
        try:
            resp, _final = self.transport.request(loc, {"Range": "bytes=%d-%d" % (start, end)})
        except (OSError, http.client.HTTPException) as exc:
            self.transport.drop(loc)
            raise RangeFault("connection failed: %s" % exc) from exc
        try:
            if resp.status == 200:
                raise NoRangeSupport()
            if resp.status != 206:
                raise RangeFault("answered HTTP %d %s for bytes %d-%d" % (resp.status, resp.reason, start, end),
                                 resp.status)
            if _is_html(resp):
                raise RangeFault("served an HTML page instead of bytes %d-%d" % (start, end))
            a, b, total = parse_content_range(resp.getheader("Content-Range"))
            if (a, b) != (start, end) or (total is not None and total != job.size):
                raise RangeFault("sent Content-Range %r for a request of bytes %d-%d/%d"
                                 % (resp.getheader("Content-Range"), start, end, job.size))
            length = resp.getheader("Content-Length")
            if length is not None and int(length) != end - start + 1:
                raise RangeFault("sent Content-Length %s for %d requested bytes" % (length, end - start + 1))
            view = _buffer()
            pos = start
            while pos <= end:
                n = resp.readinto(view[:min(BLOCK, end - pos + 1)])
                if not n:
                    raise RangeFault("closed the connection after %d of %d bytes of range %d-%d"
                                     % (pos - start, end - start + 1, start, end))
                self.transport.limiter.take(n)
                _pwrite_all(job.fd, view[:n], pos)
                pos += n
                count(n)
            if length is None and resp.read(1):  # a body delimited by the connection: it must end here
                raise RangeFault("sent more than the %d bytes of range %d-%d" % (end - start + 1, start, end))
        except (OSError, http.client.HTTPException) as exc:
            self.transport.drop(loc)
            raise RangeFault("transfer of bytes %d-%d failed: %s" % (start, end, exc)) from exc
        except (RangeFault, NoRangeSupport):
            self.transport.drop(loc)
            raise

    # -- one file from one source --------------------------------------------------------------

    def _count(self, job):
        def count(n):
            with job.lock:
                job.downloaded += n
            if self.opts.progress:
                self.opts.progress(job.path, n, job.size)
        return count

    def _ranged(self, job, source):
        """Fetch every missing chunk with ``connections`` workers while the cursor hashes in order."""
        pending = [i for i in range(job.nchunks) if i not in job.done]
        queue_lock = threading.Lock()
        failure = []
        count = self._count(job)
        stop = threading.Event()

        def worker():
            while not stop.is_set() and not self.abort.is_set():
                with queue_lock:
                    if not pending:
                        return
                    i = pending.pop(0)
                start, end = job.span(i)
                attempt = 0
                while True:
                    try:
                        self._fetch_range(job, source, start, end, count)
                        job.mark_done(i)
                        break
                    except NoRangeSupport:
                        failure.append(NoRangeSupport())
                        stop.set()
                        with job.lock:
                            job.lock.notify_all()
                        return
                    except (RangeFault, OSError, ValueError) as exc:
                        if attempt >= self.opts.retries or stop.is_set() or getattr(exc, "final", False):
                            failure.append(exc if isinstance(exc, RangeFault) else RangeFault(str(exc)))
                            stop.set()
                            with job.lock:
                                job.lock.notify_all()
                            return
                        time.sleep(backoff_delay(attempt, self.opts.backoff, self.opts.backoff_max))
                        attempt += 1
                    except Exception as exc:  # pylint: disable=broad-except
                        # never leave the cursor waiting on a worker that died
                        failure.append(RangeFault("unexpected %s: %s" % (type(exc).__name__, exc)))
                        stop.set()
                        with job.lock:
                            job.lock.notify_all()
                        return

        threads = [threading.Thread(target=worker, daemon=True)
                   for _n in range(min(self.opts.connections, max(1, len(pending))))]
        for t in threads:
            t.start()
        digest = hashlib.sha256()
        view = memoryview(bytearray(BLOCK))
        cursor = 0
        while cursor < job.nchunks:
            with job.lock:
                while cursor not in job.done and not stop.is_set() and not self.abort.is_set():
                    job.lock.wait(0.5)
                if cursor not in job.done:
                    break
            start, end = job.span(cursor)
            pos = start
            while pos <= end:
                n = os.preadv(job.fd, [view[:min(BLOCK, end - pos + 1)]], pos)
                if not n:
                    raise RangeFault("the part file %s is shorter than expected" % job.part)
                digest.update(view[:n])
                pos += n
            # start this chunk's writeback; drop the chunks before it that are written back by now
            lag_start = job.span(max(0, cursor - DROP_LAG))[0]
            _drop_behind(job.fd, lag_start, end - lag_start + 1)
            cursor += 1
        stop.set()
        for t in threads:
            t.join()
        if failure:
            raise failure[0]
        if self.abort.is_set():
            raise FetchError("aborted")
        return digest.hexdigest()

    def _stream(self, job, source):
        """A server that ignores Range: one stream, written and hashed inline."""
        job.reset()
        job.close()
        job.open()
        count = self._count(job)
        loc = source.location(job.path)
        try:
            resp, _final = self.transport.request(loc)
            if resp.status != 200:
                raise RangeFault("answered HTTP %d %s" % (resp.status, resp.reason))
            if _is_html(resp):
                raise RangeFault("served an HTML page instead of the file")
            length = resp.getheader("Content-Length")
            if length is not None and int(length) != job.size:
                raise RangeFault("sent Content-Length %s for a file of %d bytes" % (length, job.size))
            digest = hashlib.sha256()
            pos = dropped = 0
            while pos < job.size:
                block = resp.read(min(BLOCK, job.size - pos))
                if not block:
                    raise RangeFault("closed the stream after %d of %d bytes" % (pos, job.size))
                self.transport.limiter.take(len(block))
                os.pwrite(job.fd, block, pos)
                digest.update(block)
                pos += len(block)
                count(len(block))
                if pos - dropped >= job.chunk_size:  # the same drop-behind as the ranged cursor
                    lag_start = max(0, dropped - DROP_LAG * job.chunk_size)
                    _drop_behind(job.fd, lag_start, pos - lag_start)
                    dropped = pos
            if length is None and resp.read(1):  # a body delimited by the connection: it must end here
                raise RangeFault("sent more than the %d bytes the file has" % job.size)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise RangeFault("transfer failed: %s" % exc) from exc
        finally:
            self.transport.drop(loc)
        return digest.hexdigest()

    def _place(self, job):
        os.fchmod(job.fd, 0o644)  # 0600 while partial; model files are readable by the serving user once placed
        os.fsync(job.fd)
        _drop_behind(job.fd, 0, job.size)  # all clean now: the cursor's last chunks leave the page cache too
        job.close()
        makedirs_beneath(self.dest, posixpath.dirname(job.path))
        os.replace(job.part, job.final)
        fsync_dir(os.path.dirname(job.final))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(job.state_path)

    def fetch_file(self, spec):
        """Fetch one planned file (``spec`` from ``plan``); return its result dict."""
        path, size, sha = spec["path"], spec["size"], spec["sha256"]
        job = FileJob(self.dest, path, size, sha, self.opts.chunk_size)
        t0 = time.monotonic()
        resumed = job.load_state(self.opts.warn)
        errors = []
        sources = list(spec.get("order", self.sources))
        tried_fresh = set()
        for source in sources:
            for _round in range(2):  # one fresh restart per source after a digest mismatch
                job.open()
                try:
                    if size == 0:
                        got = hashlib.sha256().hexdigest()
                    elif spec.get("ranges", {}).get(source.url, True):
                        try:
                            got = self._ranged(job, source)
                        except NoRangeSupport:
                            got = self._stream(job, source)
                    else:
                        got = self._stream(job, source)
                except (RangeFault, OSError) as exc:
                    errors.append("%s: %s" % (source.describe(), exc))
                    job.close()
                    break  # next source; keep finished chunks, the digest decides in the end
                if got == job.sha256:
                    self._place(job)
                    secs = max(time.monotonic() - t0, 1e-6)
                    return {
                        "path": path, "size": size, "status": "resumed" if resumed else "fetched",
                        "bytes": job.downloaded, "resumed_bytes": job.resumed_bytes,
                        "seconds": round(secs, 3), "throughput": int(job.downloaded / secs),
                        "source": source.url,
                    }
                errors.append("%s: SHA-256 mismatch (expected %s, got %s)" % (source.describe(), job.sha256, got))
                job.close()
                job.reset()
                if source.url in tried_fresh:
                    break
                tried_fresh.add(source.url)
        job.close()
        job.reset()
        raise FetchError("could not fetch %s: %s" % (path, "; ".join(errors) or "no source configured"))

    # -- planning ------------------------------------------------------------------------------

    def refuse_links(self, *relpaths):
        """FetchError when a path under dest runs through a symlink, which could send bytes outside dest."""
        for relpath in relpaths:
            try:
                refuse_links_beneath(self.dest, relpath)
            except UnsafePath as exc:
                raise FetchError("refusing to use %s: %s, and a link inside dest could send the model outside "
                                 "it; remove the link (dest itself may be one)" % (relpath, exc)) from exc

    def plan(self, files, check_mode=False, known=None):
        """Split ``files`` (dicts path, sha256, size) into present and to-fetch.

        A file in place is hashed, unless ``known(path, final_path)`` gives its digest (the record of an
        earlier verification, for a file whose stat has not changed since). Files to fetch are probed on the
        sources (size, Range support) in order; a source that reports another size is skipped for that file
        (sizes come from the signature or the manifest, never from a mirror); a file no source has at its
        size raises FetchError.
        """
        present, todo = [], []
        for f in files:
            safe_relpath(f["path"])
            self.refuse_links(f["path"], PARTIAL_DIR + "/" + f["path"] + ".part",
                              PARTIAL_DIR + "/" + f["path"] + ".state")
            final = os.path.join(self.dest, *f["path"].split("/"))
            if os.path.isfile(final) and os.path.getsize(final) == f["size"]:
                recorded = known(f["path"], final) if known is not None else None
                if (recorded or sha256_file(final)) == f["sha256"].lower():
                    present.append({"path": f["path"], "size": os.path.getsize(final), "status": "present",
                                    "bytes": 0, "resumed_bytes": 0, "seconds": 0.0, "throughput": 0,
                                    "source": None})
                    continue
            todo.append(f)

        def probe_one(f):
            errors, ranges, order = [], {}, []
            size = f["size"]
            for s in self.sources:
                try:
                    got, ok = self.retry(lambda s=s: probe(self.transport, s, f["path"]))
                except (RangeFault, OSError, http.client.HTTPException) as exc:
                    errors.append("%s: %s" % (s.describe(), exc))
                    continue
                if got != size:  # a stale or lying mirror: the signed (or manifest) size decides
                    errors.append("%s: has %d bytes, the file list says %d" % (s.describe(), got, size))
                    continue
                ranges[s.url] = ok
                order.append(s)
            if not order:
                raise FetchError("no source has %s: %s" % (f["path"], "; ".join(errors)))
            return {"path": f["path"], "sha256": f["sha256"].lower(), "size": size, "ranges": ranges,
                    "order": order, "probe_errors": errors}

        with ThreadPoolExecutor(max_workers=min(16, max(1, len(todo)))) as ex:
            planned = list(ex.map(probe_one, todo))
        for p in planned:
            job = FileJob(self.dest, p["path"], p["size"], p["sha256"], self.opts.chunk_size)
            job.load_state(self.opts.warn, discard=not check_mode)
            p["resumable_bytes"] = job.resumed_bytes
        return present, planned

    def check_space(self, planned):
        need = sum(p["size"] - p.get("resumable_bytes", 0) for p in planned)
        os.makedirs(self.dest, exist_ok=True)
        free = shutil.disk_usage(self.dest).free
        if need > free:
            raise FetchError("not enough free space in %s: the model needs %d more bytes, %d are free; "
                             "free some space or choose another dest" % (self.dest, need, free))
        return need, free

    def fetch(self, planned):
        """Fetch planned files, ``parallel_files`` at a time; returns results in manifest order."""
        results = {}
        errors = []

        def run(p):
            try:
                results[p["path"]] = self.fetch_file(p)
            except FetchError as exc:
                errors.append(str(exc))

        with ThreadPoolExecutor(max_workers=self.opts.parallel_files) as ex:
            list(ex.map(run, planned))
        self.transport.close()
        if errors:
            raise FetchError("; ".join(errors))
        self.cleanup()
        return [results[p["path"]] for p in planned]

    def cleanup(self):
        """Remove ``.partial`` once every file is in place (leftovers of a run killed while renaming)."""
        partial = os.path.join(self.dest, PARTIAL_DIR)
        if os.path.isdir(partial):
            shutil.rmtree(partial, ignore_errors=True)


def summarize(results):
    total = sum(r["bytes"] for r in results)
    return {
        "files": len(results),
        "fetched": sum(1 for r in results if r["status"] == "fetched"),
        "resumed": sum(1 for r in results if r["status"] == "resumed"),
        "present": sum(1 for r in results if r["status"] == "present"),
        "bytes": total,
        "size": sum(r["size"] for r in results),
    }
