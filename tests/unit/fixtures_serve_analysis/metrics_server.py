"""A loopback model server stand-in for the serve_analysis tests: /metrics answers a sequence of expositions.

* ``expositions``: the bodies of successive GET /metrics; the last one repeats.
* ``metrics_faults``: a list of HTTP statuses (or ``"drop"``: close without answering) used, one per request,
  before the next exposition is served; a fault does not advance the sequence (a retry gets the same one).
* ``health``: the statuses of successive GET /health/ready; the last one repeats.
* ``token``: when set, every request needs ``Authorization: Bearer <token>`` (401 otherwise).
* ``redirect_metrics``: GET /metrics answers 307 to this location instead.
* ``tls``: ``(certfile, keyfile)`` to serve https.

``requests`` records ``(path, headers dict)`` of every request.
"""

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", ctype="text/plain", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server.owner
        with srv.lock:
            srv.requests.append((self.path, dict(self.headers)))
        if srv.token is not None and self.headers.get("Authorization") != "Bearer %s" % srv.token:
            self._send(401, b'{"error": "unauthorized"}', "application/json")
            return
        if self.path == "/metrics":
            with srv.lock:
                if srv.redirect_metrics:
                    self._send(307, headers={"Location": srv.redirect_metrics})
                    return
                fault = srv.metrics_faults.pop(0) if srv.metrics_faults else None
                if fault is None:
                    body = srv.expositions[min(srv.served, len(srv.expositions) - 1)]
                    srv.served += 1
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault is not None:
                self._send(fault, b"upstream error\n")
                return
            self._send(200, body.encode(), CONTENT_TYPE)
        elif self.path in ("/health/ready", "/health"):
            with srv.lock:
                status = srv.health[min(srv.health_served, len(srv.health) - 1)]
                srv.health_served += 1
            self._send(status, b'{"status": "%s"}' % (b"ready" if status == 200 else b"not ready"), "application/json")
        else:
            self._send(404, b"not found\n")


class MetricsServer:
    def __init__(self, expositions, health=(200,), token=None, tls=None):
        self.expositions = list(expositions)
        self.metrics_faults = []
        self.health = list(health)
        self.token = token
        self.redirect_metrics = None
        self.served = 0
        self.health_served = 0
        self.requests = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.owner = self
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.httpd.server_address[1])

    @property
    def url(self):
        return self.base + "/metrics"

    def paths(self):
        with self.lock:
            return [p for p, _h in self.requests]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
