"""HTTP serving: the telemetry path and a landing page at /, over TLS and with basic auth when configured.

Hardened for years on every host: GET and HEAD on two paths only, request line and headers capped in size,
a read timeout for slow clients (and the TLS handshake, done in the connection's own thread), a cap on
concurrent connections, a rate limit when configured, and never a traceback to a client or on stderr.
"""

import gzip
import html
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

from . import __version__
from .config import parse_listen_address
from .singleflight import SingleFlight
from .webconfig import NO_SECURITY, Authenticator, RateLimiter, WebSecurity

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16384  # request line and headers together

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


class RequestTooLarge(Exception):
    pass


class _CappedReader:
    """The connection's reader, refusing to read more than MAX_REQUEST_BYTES per request head."""

    def __init__(self, raw):
        self.raw = raw
        self.left = MAX_REQUEST_BYTES

    def readline(self, limit=-1):
        line = self.raw.readline(min(limit, self.left + 1) if limit >= 0 else self.left + 1)
        self.left -= len(line)
        if self.left < 0:
            raise RequestTooLarge
        return line

    def __getattr__(self, name):
        return getattr(self.raw, name)


class Handler(BaseHTTPRequestHandler):
    server_version = f"sockdiag_exporter/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self):
        self.timeout = self.server.read_timeout
        super().setup()
        self.rfile = _CappedReader(self.rfile)

    def handle_one_request(self):
        self.rfile.left = MAX_REQUEST_BYTES
        try:
            super().handle_one_request()
        except RequestTooLarge:
            self.requestline = getattr(self, "requestline", "") or "(request line too long)"
            self.request_version, self.command = "HTTP/1.1", None
            self.close_connection = True
            self._reply(431, "text/plain; charset=utf-8", b"Request Header Fields Too Large\n", True)
            self.wfile.flush()
            self._linger()

    def _linger(self):
        """Half-close and read what the client still sends for a moment: closing with unread input would reset the
        connection before the client reads the answer."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(1.0)
            for _ in range(64):
                if not self.connection.recv(65536):
                    break
        except OSError:
            pass

    def do_GET(self):
        self._serve(with_body=True)

    def do_HEAD(self):
        self._serve(with_body=False)

    def _method_not_allowed(self):
        self._reply(405, "text/plain; charset=utf-8", b"Method Not Allowed\n", True, {"Allow": "GET, HEAD"})

    def __getattr__(self, name):
        if name.startswith("do_"):  # every method but GET and HEAD, known or invented: 405, not 501
            return self._method_not_allowed
        raise AttributeError(name)

    def version_string(self):
        return self.server_version

    def _serve(self, with_body: bool):
        path = self.path.split("?", 1)[0]
        server = self.server
        if not server.limiter.allow():
            self._reply(429, "text/plain; charset=utf-8", b"Too Many Requests\n", with_body)
            return
        if server.security.needs_auth(path) and not server.authenticator.check(self.headers.get("Authorization")):
            self._reply(401, "text/plain; charset=utf-8", b"Unauthorized\n", with_body,
                        {"WWW-Authenticate": 'Basic realm="sockdiag_exporter"'})
            return
        app = server.app
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
        if compress and _wants_gzip(getattr(self, "headers", None)) and len(body) > 1024:
            body = gzip.compress(body, compresslevel=6)
            headers = dict(headers or {}, **{"Content-Encoding": "gzip"})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**self.server.security.headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """The standard library's errors (400, 414, 501, 505) without its HTML page; connection closed. Always an
        HTTP/1.1 status line: the library would answer a request it could not parse as HTTP/0.9, bare."""
        self.close_connection = True
        self.request_version = "HTTP/1.1"
        text = (message or self.responses.get(code, ("Error",))[0]).encode("latin-1", "replace") + b"\n"
        self._reply(code, "text/plain; charset=utf-8", text, self.command != "HEAD")

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


def _wants_gzip(headers) -> bool:
    return headers is not None and "gzip" in headers.get("Accept-Encoding", "")


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

    def __init__(self, listen_address: str, app: App, sock: socket.socket = None, security: WebSecurity = NO_SECURITY,
                 max_connections: int = 256, read_timeout: float = 10.0):
        """Listen on listen_address, or serve sock (a listening socket passed by systemd) when given."""
        self.app = app
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self.secure(security)
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

    def secure(self, security: WebSecurity) -> None:
        """Apply a (re)loaded web configuration to new connections."""
        self.security = security
        self.authenticator = Authenticator(security.users)
        self.limiter = RateLimiter(security.rate_interval, security.rate_burst)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):  # too many connections: refuse this one at once
            log.debug("refusing %s: too many connections", client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request, client_address):
        security = self.security
        if security.tls is not None:
            request.settimeout(self.read_timeout)  # a handshake never completed is a slow client too
            try:
                request = security.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                log.debug("TLS handshake with %s failed: %s", client_address, e)
                return
            if security.allowed_sans and not _san_allowed(request.getpeercert(), security.allowed_sans):
                log.debug("client certificate of %s has no allowed SAN", client_address)
                request.close()
                return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address):
        """A broken connection is the client's business: one debug line, no traceback on stderr."""
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def probe(self, timeout: float = 5.0) -> bool:
        """True if the server answers on its own socket (an HTTP status line, or a TLS handshake reply)."""
        host, port = self.socket.getsockname()[:2]
        host = {"::": "::1", "0.0.0.0": "127.0.0.1"}.get(host, host)
        try:
            with socket.create_connection((host, port), timeout=timeout) as conn:
                if self.security.tls is not None:
                    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    client.check_hostname = False
                    client.verify_mode = ssl.CERT_NONE
                    try:
                        with client.wrap_socket(conn) as tls:
                            tls.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
                            return tls.recv(5) == b"HTTP/"
                    except ssl.SSLError:  # a server that requires client certificates still answered
                        return True
                conn.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
                return conn.recv(5) == b"HTTP/"
        except OSError:
            return False

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread


def _san_allowed(cert: dict, allowed) -> bool:
    return any(value in allowed for _, value in (cert or {}).get("subjectAltName", ()))
