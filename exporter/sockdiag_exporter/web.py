"""HTTP serving: the telemetry path, a landing page at /, and nothing else."""

import gzip
import html
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

from . import __version__
from .config import parse_listen_address
from .scrape import SingleFlight

log = logging.getLogger(__name__)

LANDING_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>sockdiag_exporter</title></head>
<body>
<h1>sockdiag_exporter {version}</h1>
<p>Prometheus metrics for every socket on this host, read through the kernel's sock_diag interface.</p>
<ul><li><a href="{path}">{path}</a> &mdash; metrics</li></ul>
</body>
</html>
"""


class Handler(BaseHTTPRequestHandler):
    server_version = f"sockdiag_exporter/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self._serve(with_body=True)

    def do_HEAD(self):
        self._serve(with_body=False)

    def _method_not_allowed(self):
        self._reply(405, "text/plain; charset=utf-8", b"Method Not Allowed\n", True, {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _method_not_allowed

    def _serve(self, with_body: bool):
        path = self.path.split("?", 1)[0]
        app = self.server.app
        if path == app.telemetry_path:
            gzipped = _wants_gzip(self.headers)
            try:
                body, content_type = app.render(self.headers.get("Accept", ""), gzipped)
            except Exception as e:  # never a traceback to the client
                log.error("rendering metrics failed: %s: %s", type(e).__name__, e)
                self._reply(500, "text/plain; charset=utf-8", b"Internal Server Error\n", with_body)
                return
            self._reply(200, content_type, body, with_body, {"Content-Encoding": "gzip"} if gzipped else None,
                        compress=False)
        elif path == "/":
            page = LANDING_PAGE.format(version=__version__, path=html.escape(app.telemetry_path))
            self._reply(200, "text/html; charset=utf-8", page.encode(), with_body)
        else:
            self._reply(404, "text/plain; charset=utf-8", b"Not Found\n", with_body)

    def _reply(self, status: int, content_type: str, body: bytes, with_body: bool, headers=None, compress=True):
        if compress and _wants_gzip(self.headers) and len(body) > 1024:
            body = gzip.compress(body, compresslevel=6)
            headers = dict(headers or {}, **{"Content-Encoding": "gzip"})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


def _wants_gzip(headers) -> bool:
    return "gzip" in headers.get("Accept-Encoding", "")


class App:
    """What the handler serves: the registry behind the telemetry path.

    Rendering is single-flight per format: scrapes that arrive while a body is being made (collection, encoding,
    compression) share that body, so a burst of N scrapes costs one set of kernel dumps and one encoding.
    """

    def __init__(self, registry, telemetry_path: str):
        self.registry = registry
        self.telemetry_path = telemetry_path
        self._flights = {}
        self._lock = threading.Lock()

    def render(self, accept: str, gzipped: bool):
        """(body, content type) of the metrics in the format accept asks for."""
        encoder, content_type = choose_encoder(accept)
        key = (content_type, gzipped)
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = SingleFlight(lambda: self._encode(encoder, gzipped))
        return flight(), content_type

    def _encode(self, encoder, gzipped: bool) -> bytes:
        body = encoder(self.registry)
        return gzip.compress(body, compresslevel=6) if gzipped else body


def _ipv6_available() -> bool:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
        return True
    except OSError:  # IPv6 disabled in this kernel or namespace
        return False


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's default backlog of 5 drops SYNs of a scrape burst: 1 s retries

    def __init__(self, listen_address: str, app: App, sock: socket.socket = None):
        """Listen on listen_address, or serve sock (a listening socket passed by systemd) when given."""
        self.app = app
        if sock is not None:
            self.address_family = sock.family
            super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
            return
        host, port = parse_listen_address(listen_address)
        self.address_family = socket.AF_INET6 if (not host and _ipv6_available()) or ":" in host else socket.AF_INET
        super().__init__((host or ("::" if self.address_family == socket.AF_INET6 else "0.0.0.0"), port), Handler,
                         bind_and_activate=False)
        try:
            if self.address_family == socket.AF_INET6 and not host:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # :port = v4 and v6
            self.server_bind()
            self.server_activate()
        except OSError:
            self.server_close()
            raise

    def probe(self, timeout: float = 5.0) -> bool:
        """True if the server answers an HTTP request on its own socket (any status line)."""
        host, port = self.socket.getsockname()[:2]
        host = {"::": "::1", "0.0.0.0": "127.0.0.1"}.get(host, host)
        try:
            with socket.create_connection((host, port), timeout=timeout) as conn:
                conn.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
                return conn.recv(5) == b"HTTP/"
        except OSError:
            return False

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread
