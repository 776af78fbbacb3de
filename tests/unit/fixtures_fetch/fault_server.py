"""A loopback HTTP server that serves a directory with Range support and injects faults on demand.

Faults (set on ``server.faults``, keyed by the file path relative to the served root):

* ``drop_at[path] = offset``     - close the connection when a response reaches that byte (every time);
* ``drop_once[path] = offset``   - the same, only for the first response that reaches it;
* ``flip[path] = offset``        - flip one bit of that byte in every response that carries it;
* ``ignore_range`` (set)         - answer ranged requests with 200 and the whole file;
* ``status[path] = (code, n)``   - answer the next ``n`` requests with ``code`` (n = -1: always);
* ``html`` (set)                 - answer 200 with an HTML error page;
* ``bad_content_range`` (set)    - send a Content-Range shifted by one byte;
* ``short_length[path] = n``     - announce ``n`` bytes more Content-Length than sent, then close;
* ``total[path] = text``         - send ``text`` as the total in every Content-Range (e.g. ``-5``);
* ``overrun[path] = n``          - send ``n`` bytes more than the file (or the range) holds, with no
                                   Content-Length, and close (a body delimited by the connection);
* ``redirect[path] = base``      - answer 302 with ``Location: <base>/<path>`` (a CDN, another host);
* ``delay``                      - seconds to sleep per 64 KiB block sent (a slow mirror).

``served[path]`` counts the body bytes sent per file, ``requests[path]`` the requests and ``seen[path]`` the
headers of each request (lower-case names). A handler counts a block after its write returns, so a client can
hold the bytes before they are counted: read the counts through ``settled()``, which waits until no response is
being written. ``FaultServer(root, tls=(certfile, keyfile))`` serves HTTPS.
"""

import os
import re
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOCK = 64 * 1024


class Faults:
    def __init__(self):
        self.drop_at = {}
        self.drop_once = {}
        self.flip = {}
        self.ignore_range = set()
        self.status = {}
        self.html = set()
        self.bad_content_range = set()
        self.short_length = {}
        self.total = {}
        self.overrun = {}
        self.redirect = {}
        self.delay = 0.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _rel(self):
        path = urllib.parse.urlsplit(self.path).path
        return urllib.parse.unquote(path.lstrip("/"))

    def do_GET(self):
        srv = self.server
        with srv.idle:
            srv.responding += 1
        try:
            self._get()
        finally:
            with srv.idle:
                srv.responding -= 1
                srv.idle.notify_all()

    def _get(self):
        srv = self.server
        rel = self._rel()
        f = srv.faults
        with srv.lock:
            srv.requests[rel] = srv.requests.get(rel, 0) + 1
            srv.seen.setdefault(rel, []).append({k.lower(): v for k, v in self.headers.items()})
            st = f.status.get(rel)
            if st and st[1] != 0:
                f.status[rel] = (st[0], st[1] - 1 if st[1] > 0 else -1)
        if st and st[1] != 0:
            body = b"injected error"
            self.send_response(st[0])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if rel in f.redirect:
            self.send_response(302)
            self.send_header("Location", "%s/%s" % (f.redirect[rel].rstrip("/"), urllib.parse.quote(rel)))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if rel in f.html:
            body = b"<html><body>502 Bad Gateway</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        full = os.path.join(srv.root, rel)
        if not rel or not os.path.isfile(full):
            body = b"not found"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        size = os.path.getsize(full)
        start, end, status = 0, size - 1, 200
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if m and rel not in f.ignore_range:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        extra = f.short_length.get(rel, 0)
        overrun = f.overrun.get(rel, 0)
        if overrun:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length + extra))
        if status == 206:
            shift = 1 if rel in f.bad_content_range else 0
            total = f.total.get(rel, str(size))
            self.send_header("Content-Range", "bytes %d-%d/%s" % (start + shift, end + shift, total))
        self.end_headers()
        drop = f.drop_at.get(rel)
        with srv.lock:
            once = f.drop_once.get(rel)
            if once is not None and start <= once <= end:
                del f.drop_once[rel]
                drop = once
        with open(full, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos <= end:
                n = min(BLOCK, end - pos + 1)
                if drop is not None and pos <= drop < pos + n:
                    n = drop - pos
                data = bytearray(fh.read(n))
                flip = f.flip.get(rel)
                if flip is not None and pos <= flip < pos + len(data):
                    data[flip - pos] ^= 0x01
                try:
                    self.wfile.write(data)
                except OSError:
                    return
                with srv.lock:
                    srv.served[rel] = srv.served.get(rel, 0) + len(data)
                pos += len(data)
                if drop is not None and pos == drop:
                    self.close_connection = True
                    return
                if f.delay:
                    time.sleep(f.delay)
        if overrun:
            try:
                for _n in range(0, overrun, BLOCK):
                    self.wfile.write(b"\0" * min(BLOCK, overrun - _n))
                    with srv.lock:
                        srv.served[rel] = srv.served.get(rel, 0) + min(BLOCK, overrun - _n)
            except OSError:
                return
        if extra:
            self.close_connection = True


class FaultServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root, tls=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.root = root
        self.faults = Faults()
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.responding = 0
        self.served = {}
        self.requests = {}
        self.seen = {}
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.started = self.closed = False

    def handle_error(self, request, client_address):
        pass  # clients that hang up (on purpose, in the fault tests) are not errors here

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.server_address[1])

    def settled(self, timeout=10):
        """A copy of ``served`` once no response is being written (or after ``timeout`` seconds)."""
        with self.idle:
            self.idle.wait_for(lambda: self.responding == 0, timeout)
            return dict(self.served)

    def start(self):
        if not self.started:
            self.started = True
            self.thread.start()
        return self

    def close(self):
        """Stop serving and close the socket; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        if self.started:
            self.shutdown()
            self.thread.join()
        self.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
