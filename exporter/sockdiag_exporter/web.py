"""HTTP serving: one event-loop thread owns every connection; h11 owns HTTP/1.1 framing.

A slow client costs a few kilobytes and some timers, not a thread. Everything a client can send is bounded:
the request head (16 KiB) and body (read and discarded, 64 KiB), the time to send a request (read_timeout, from
its first byte or from the connection's start; the TLS handshake within it too), the time a kept-alive connection
may sit idle, the time a response may take to be read, the connections of one address and of all. When the
connection table is full, idle keep-alive connections are closed first, then the oldest connection that has not
completed a request head; failing that the newcomer is closed at once. `accept()` errors (EMFILE) back off.
TLS runs through an ssl.MemoryBIO pair in the connection itself: a few kilobytes per handshake (asyncio's own TLS
transport holds a 256 KiB buffer per connection: 1,000 silent TLS clients cost 80 MB of RSS that stayed).
Responses leave in one write on a TCP_NODELAY socket, with headers from a fixed set, never a traceback.
"""

import asyncio
import ctypes
import email.utils
import errno
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple
from urllib.parse import parse_qs

import h11

from . import __version__
from .config import parse_listen_address
from .webapp import HTML, PLAIN, App, choose_format, wants_gzip
from .webauth import Authenticator, Busy, ClientRateLimiter
from .webconfig import NO_SECURITY, WebSecurity

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16384  # request line and headers together
MAX_BODY_BYTES = 65536  # a request body is read and discarded up to this; beyond it 413 and close
TLS_READ = 65536  # plaintext taken from the TLS object per read
BUSY_DELAY = 1.0  # a 429 (rate limit, full bcrypt queue) waits this long: 200 brute-forcing connections made 3,500
# requests a second of event-loop work without it, and legitimate scrapes 10x slower
TRIM_AFTER = 64  # connections open at once after which, once they are gone, freed heap goes back to the kernel
LINGER_SECONDS = 1.0  # after an error answer, read what the client still sends for this long before closing
ACCEPT_BATCH = 64  # connections accepted per wake-up of the loop
# While a collection and its first body are made, new connections wait in the listening socket's backlog, this long
# at most: the collection thread and the event loop take turns on one GIL, and a loop busy with a flood of new
# connections made a small collection take 3x as long (radamsa at 3,100 requests a second: legitimate scrapes 6.7 ->
# 28.9 ms at p95; 15.1 with the pause over the collection alone). Connections already open are served meanwhile; a
# longer collection lets new ones in after this.
COLLECTION_PAUSE = 0.05
BACKLOG = 128  # a burst of scrapers is not dropped (a dropped SYN costs the client 1 s)
SERVER = f"sockdiag_exporter/{__version__}".encode()
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           413: "Content Too Large", 414: "URI Too Long", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           505: "HTTP Version Not Supported"}
ERROR_BODIES = {status: f"{reason}\n".encode() for status, reason in REASONS.items()}
ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(.*)", re.S)  # group 1: path and query
ACCEPT_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256
    max_connections_per_client: int = 32
    read_timeout: float = 10.0  # request head (and body) complete, TLS handshake included
    idle_timeout: float = 5.0  # a kept-alive connection waiting for its next request
    write_timeout: float = 10.0  # a response the client does not read

    @classmethod
    def from_config(cls, web) -> "Limits":
        return cls(web.max_connections, web.max_connections_per_client, web.read_timeout_seconds,
                   web.idle_timeout_seconds, web.write_timeout_seconds)


class _Policy:
    """What a (re)loaded web configuration makes the server enforce; swapped whole, used by new requests."""

    def __init__(self, security: WebSecurity, previous: Optional["_Policy"] = None):
        self.security = security
        self.authenticator = Authenticator(security.users, verified=previous and previous.authenticator.verified)
        self.limiter = ClientRateLimiter(security.rate_interval, security.rate_burst)
        self.tls = _tls_context(security.tls) if security.tls is not None else None


def _tls_context(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """The configured context, hardened: no client-initiated renegotiation (a CPU DoS), no compression (CRIME)."""
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    return ctx


def _client(address) -> str:
    host = address[0] if isinstance(address, tuple) else str(address)
    return host[7:] if host.startswith("::ffff:") else host  # IPv4 through a dual-stack socket


class _Date:
    """The Date header, formatted once a second."""

    second, value = -1, b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, email.utils.formatdate(second, usegmt=True).encode()
        return cls.value


class _Connection(asyncio.Protocol):
    """One client connection: feeds h11, enforces deadlines, answers one request at a time."""

    def __init__(self, server: "Server", client: str, exempt: bool):
        self.server, self.client, self.exempt = server, client, exempt
        self.opened = time.monotonic()
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        self.transport = None
        self.setup = None  # the task making the transport
        self.task = None  # the response being made
        self.tls = None  # ssl.SSLObject while the connection speaks TLS
        self.tls_in = self.tls_out = None
        self.handshaken = False
        self.idle = False  # kept alive between requests: the first to go when the table is full
        self.parked = False  # waiting out BUSY_DELAY: as expendable as an idle one
        self.heading = True  # no complete request head yet
        self.closing = False
        self.head_bytes = 0  # received while heading (a bound of the head's size)
        self.body_bytes = 0
        self.request: Optional[h11.Request] = None
        self._timer = None
        self._drained: Optional[asyncio.Future] = None
        self.policy = server.policy

    # -- asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport
        raw = transport.get_extra_info("socket")
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # head+body already leave in one write
        except (OSError, AttributeError):
            pass
        transport.set_write_buffer_limits(high=0)  # pause_writing whenever anything waits, to time its drain
        self._deadline(self.server.limits.read_timeout)  # the TLS handshake and the first request head

    def data_received(self, data):
        if self.tls is None and self.policy.tls is not None:  # made at the first byte: silence costs no TLS state
            self.tls_in, self.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = self.policy.tls.wrap_bio(self.tls_in, self.tls_out, server_side=True)
        if self.tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        if self.closing:
            return  # lingering after an error: discard
        if self.idle:
            self.idle, self.heading = False, True
            self._deadline(self.server.limits.read_timeout)  # the whole request, from its first byte
        if self.heading:
            if b"\n" in data and _http09(self.h11.trailing_data[0] + data):
                self.transport.close()  # HTTP/0.9 has no status line to answer with
                return
            self.head_bytes += len(data)
        self.h11.receive_data(data)
        self._process()

    def _decrypt(self, data: bytes) -> bytes:
        """Plaintext out of TLS records (the handshake first, with its SAN check); b"" when there is none yet."""
        self.tls_in.write(data)
        plain = []
        try:
            if not self.handshaken:
                self.tls.do_handshake()
                self.handshaken = True
                sans = self.policy.security.allowed_sans
                if sans and not _san_allowed(self.tls.getpeercert(), sans):
                    log.debug("client certificate of %s has no allowed SAN", self.client)
                    self.transport.abort()
                    return b""
            while True:
                chunk = self.tls.read(TLS_READ)
                if not chunk:
                    break
                plain.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:  # close_notify: the client is done
            self._send_tls()
            self.transport.close()
            return b""
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS with %s failed: %s", self.client, e)
            self._send_tls()  # the alert, if any
            self.transport.close()
            return b""
        self._send_tls()  # handshake messages, session tickets
        return b"".join(plain)

    def _send_tls(self, plain: bytes = b""):
        if plain:
            self.tls.write(plain)
        records = self.tls_out.read()
        if records:
            self.transport.write(records)

    def eof_received(self):
        """The client is done sending: a request in progress is still answered (h11 then closes the connection),
        an idle connection closes now."""
        if self.closing:
            return False
        self.h11.receive_data(b"")
        self._process()
        return True

    def connection_lost(self, exc):
        self._cancel_timer()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(False)
        self.server._forget(self)

    def pause_writing(self):
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self):
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(True)
        self._drained = None

    # -- requests
    def _process(self):
        while self.task is None and not self.closing:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                self._refuse(e)
                return
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Request):
                self.heading, self.request, self.body_bytes, self.head_bytes = False, event, 0, 0
                names = [name for name, _ in event.headers]
                if b"transfer-encoding" in names and b"content-length" in names:  # ambiguous framing: smuggling
                    self._error(400)
                    return
                # h11 caps only a head that arrives in pieces; one that came whole is measured here
                if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > MAX_REQUEST_BYTES:
                    self._error(431)
                    return
            elif isinstance(event, h11.Data):
                self.body_bytes += len(event.data)
                if self.body_bytes > MAX_BODY_BYTES:
                    self._error(413)
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._cancel_timer()
                self.transport.pause_reading()  # pipelined requests wait in h11's buffer
                self.task = asyncio.ensure_future(self._respond(self.request))
                return
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                self.transport.close()
                return

    def _refuse(self, e: h11.RemoteProtocolError):
        """h11 refused the request: a status from its hint (400, 431, 501), then close."""
        too_long = self.heading and self.head_bytes > MAX_REQUEST_BYTES  # a head that came whole, h11 parsed
        self._error(431 if too_long else e.error_status_hint if e.error_status_hint in REASONS else 400)

    def _error(self, status: int):
        """Answer status and close, reading what the client still sends for a moment: closing on unread input
        would reset the connection before the client reads the answer."""
        self._cancel_timer()
        self.closing = True
        self.transport.pause_reading()
        self.task = asyncio.ensure_future(self._answer_error(status))

    async def _answer_error(self, status: int):
        if await self._write(status, PLAIN, ERROR_BODIES[status], True, close=True):
            self.transport.resume_reading()
            if self.tls is None:
                self.transport.write_eof()
            self._deadline(LINGER_SECONDS)

    async def _respond(self, request: h11.Request):
        try:
            status, content_type, body, extra = await self.server.handle(request, self)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never a traceback to the client
            log.error("serving %s failed: %s: %s", request.target[:100], type(e).__name__, e)
            status, content_type, body, extra = 500, PLAIN, ERROR_BODIES[500], ()
        if not await self._write(status, content_type, body, request.method != b"HEAD", extra):
            return
        if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            self.transport.close()  # HTTP/1.0, Connection: close
            return
        self.h11.start_next_cycle()
        self.task, self.request, self.idle = None, None, True
        self._deadline(self.server.limits.idle_timeout)
        self.transport.resume_reading()
        if self.h11.trailing_data[0]:  # a pipelined request is waiting
            self.idle, self.heading = False, True
            self._deadline(self.server.limits.read_timeout)
            self._process()

    async def _write(self, status, content_type, body, with_body, extra=(), close=False) -> bool:
        """The response in one write; True once the client has taken it all (within the write deadline), False if
        the connection is gone."""
        headers = [(b"Content-Type", content_type.encode()), (b"Content-Length", str(len(body)).encode()),
                   (b"Date", _Date.now()), (b"Server", SERVER)]
        headers += [(k.encode(), v.encode()) for k, v in self.policy.security.headers.items()]
        headers += [(k.encode(), v.encode()) for k, v in extra]
        if close:
            headers.append((b"Connection", b"close"))
        try:
            out = self.h11.send_with_data_passthrough(h11.Response(status_code=status, headers=headers,
                                                                   reason=REASONS[status]))
            if with_body and body:
                out += self.h11.send_with_data_passthrough(h11.Data(data=body))
            out += self.h11.send_with_data_passthrough(h11.EndOfMessage())
        except h11.LocalProtocolError:  # e.g. an answer after a request h11 could not parse at all
            out = [f"HTTP/1.1 {status} {REASONS[status]}\r\n".encode(),
                   b"".join(k + b": " + v + b"\r\n" for k, v in headers if k != b"Connection"),
                   b"Connection: close\r\n\r\n", body if with_body else b""]
            close = True
        if self.transport.is_closing():
            return False
        if self.tls is not None:
            self._send_tls(b"".join(out))
        else:
            self.transport.write(b"".join(out))
        if self._drained is not None:
            self._deadline(self.server.limits.write_timeout)
            if not await self._drained:
                return False
            self._cancel_timer()
        return not self.transport.is_closing()

    # -- deadlines
    def _deadline(self, seconds: float):
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(max(seconds, 0), self._expired)

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self):
        self._timer = None
        if self.transport is not None:
            self.transport.abort()

    def evict(self):
        """Close for a newcomer: at once, nothing to say."""
        if self.transport is not None:
            self.transport.abort()
        elif self.setup is not None:
            self.setup.cancel()


class Server:
    """The listening socket and the event-loop thread serving it."""

    def __init__(self, listen_address: str, app: App, sock: socket.socket = None, security: WebSecurity = NO_SECURITY,
                 max_connections: int = 256, read_timeout: float = 10.0, limits: Optional[Limits] = None):
        """Listen on listen_address, or serve sock (a listening socket passed by systemd) when given."""
        self.app = app
        self.limits = limits or Limits(max_connections=max_connections, read_timeout=read_timeout)
        self.policy = _Policy(security)
        self._connections: Dict[_Connection, None] = {}  # insertion order: oldest first
        self._per_client: Dict[str, int] = {}  # bounded: one entry per client with an open connection
        self._probes = set()  # local ports of this process's own health probes: never refused
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._accept_backoff = 0.0
        self._last_accept_error = None
        self._accepting = False  # the listening socket is watched by the loop
        self._backing_off = False  # accept() failed for want of fds: not watched for a while
        self._paused = None  # the timer ending a pause for a collection, while there is one
        self._crowd = 0  # most connections open at once since the last trim
        self.socket = sock if sock is not None else _listen(listen_address)
        self.socket.setblocking(False)
        app.on_busy = self._busy

    @property
    def security(self) -> WebSecurity:
        return self.policy.security

    def secure(self, security: WebSecurity) -> None:
        """Apply a (re)loaded web configuration to new connections; open ones keep their TLS session."""
        old = self.policy
        self.policy = _Policy(security, old)
        old.authenticator.close()

    # -- lifecycle
    def start(self) -> threading.Thread:
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            self._loop.set_exception_handler(_loop_error)
            self._set_accepting()
            self._loop.call_soon(ready.set)
            try:
                self._loop.run_forever()
            finally:
                self._loop.remove_reader(self.socket.fileno())
                for conn in list(self._connections):
                    conn.evict()
                self._loop.run_until_complete(asyncio.sleep(0))  # let aborted transports close their sockets
                self._loop.close()

        self._thread = threading.Thread(target=run, name="http", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self._thread

    def shutdown(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def server_close(self) -> None:
        self.socket.close()
        self.app.close()
        self.policy.authenticator.close()

    # -- connections
    def _accept(self):
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                self._accept_backoff = 0.0
                return
            except OSError as e:
                if e.errno in ACCEPT_ERRORS:
                    self._accept_failed(e)
                    return
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that one connection is gone
                raise
            self._admit(sock, address)

    def _accept_failed(self, e: OSError):
        """Out of file descriptors (or memory): make room by closing an idle connection, else stop accepting for a
        while (0.1 s, doubling up to 1 s) instead of spinning on a listening socket that stays readable."""
        if self._evict_one():
            self._loop.call_soon(self._accept)
            return
        self._accept_backoff = min(max(self._accept_backoff * 2, 0.1), 1.0)
        if e.errno != self._last_accept_error:
            log.warning("cannot accept connections: %s; retrying every %.1f s at most", e.strerror,
                        self._accept_backoff)
            self._last_accept_error = e.errno
        self._backing_off = True
        self._set_accepting()
        self._loop.call_later(self._accept_backoff, self._resume_accepting)

    def _resume_accepting(self):
        self._backing_off = False
        self._set_accepting()

    def _busy(self, busy: bool):
        """A collection started (busy) or its first body is ready: new connections wait (COLLECTION_PAUSE at most)
        meanwhile."""
        if busy and self._paused is None:
            self._paused = self._loop.call_later(COLLECTION_PAUSE, self._busy, False)
        elif not busy and self._paused is not None:
            self._paused.cancel()
            self._paused = None
        else:
            return
        self._set_accepting()

    def _set_accepting(self):
        """Watch the listening socket unless backing off or paused for a collection (a backlog that waited meanwhile
        makes it readable at once: no accept of our own, which beside the reader's would close two idle
        connections for one newcomer at the fd limit)."""
        wanted = not self._backing_off and self._paused is None
        if wanted == self._accepting:
            return
        self._accepting = wanted
        if wanted:
            self._loop.add_reader(self.socket.fileno(), self._accept)
        else:
            self._loop.remove_reader(self.socket.fileno())

    def _admit(self, sock: socket.socket, address):
        client = _client(address)
        exempt = address[1] in self._probes and client in ("127.0.0.1", "::1")
        if not exempt and not self._room_for(client):
            log.debug("refusing %s: too many connections", client)
            sock.close()
            return
        conn = _Connection(self, client, exempt)
        self._connections[conn] = None
        self._per_client[client] = self._per_client.get(client, 0) + 1
        if self._accept_error_logged():
            log.info("accepting connections again")
        conn.setup = asyncio.ensure_future(self._connect(conn, sock))

    def _room_for(self, client: str) -> bool:
        """Whether a new connection of client fits, after closing an idle or unfinished one where that makes room."""
        limits = self.limits
        if self._per_client.get(client, 0) >= limits.max_connections_per_client and not self._evict_one(client):
            return False
        return len(self._connections) < limits.max_connections or self._evict_one()

    async def _connect(self, conn: _Connection, sock: socket.socket):
        try:
            await self._loop.connect_accepted_socket(lambda: conn, sock)
        except (OSError, asyncio.CancelledError) as e:
            log.debug("connection from %s failed: %r", conn.client, e)
            sock.close()
            self._forget(conn)
        finally:
            conn.setup = None

    def _accept_error_logged(self) -> bool:
        was, self._last_accept_error = self._last_accept_error, None
        return was is not None

    def _forget(self, conn: _Connection):
        if self._connections.pop(conn, False) is None:
            left = self._per_client[conn.client] - 1
            if left:
                self._per_client[conn.client] = left
            else:
                del self._per_client[conn.client]
        self._crowd = max(self._crowd, len(self._connections) + 1)
        if self._crowd >= TRIM_AFTER and len(self._connections) <= 4:
            self._crowd = 0
            self._loop.call_later(1.0, _trim_malloc)

    def _evict_one(self, client: Optional[str] = None) -> bool:
        """Close the oldest idle keep-alive connection (of client, when given), else the oldest that has not
        completed a request head (a connection being answered is never closed); False if there is none.

        Unfinished heads go oldest first and without a grace period: to push out a scraper that is still sending
        its request, a flood must open max_connections connections within that scraper's round trip."""
        stale = None
        for conn in self._connections:
            if conn.exempt or (client is not None and conn.client != client):
                continue
            if conn.idle or conn.parked:
                conn.evict()
                self._forget(conn)
                return True
            if stale is None and conn.heading and not conn.closing:
                stale = conn
        if stale is not None:
            stale.evict()
            self._forget(stale)
            return True
        return False

    # -- requests
    async def handle(self, request: h11.Request, conn: _Connection):
        """(status, content type, body, extra headers) for one complete request."""
        policy = conn.policy
        target = request.target.decode("latin-1")
        absolute = ABSOLUTE_FORM.match(target)  # RFC 9112 3.2.2: served by its path
        if absolute:
            target = absolute.group(1) if absolute.group(1).startswith("/") else "/" + absolute.group(1)
        path, _, query = target.partition("?")
        if request.method not in (b"GET", b"HEAD"):
            return 405, PLAIN, ERROR_BODIES[405], (("Allow", "GET, HEAD"),)
        if not conn.exempt and not policy.limiter.allow(conn.client):
            return await _too_many(conn)
        headers = {}
        for name, value in request.headers:
            headers.setdefault(name, value.decode("latin-1"))
        if policy.security.needs_auth(path):
            try:
                ok = await policy.authenticator.check(headers.get(b"authorization"))
            except Busy:
                return await _too_many(conn)
            if not ok:
                return 401, PLAIN, ERROR_BODIES[401], (("WWW-Authenticate", 'Basic realm="sockdiag_exporter"'),)
        app = self.app
        if path == app.telemetry_path:
            fmt = choose_format(headers.get(b"accept", ""))
            gzipped = wants_gzip(headers.get(b"accept-encoding", ""))
            names = parse_qs(query).get("name[]")
            body = await app.metrics(fmt, gzipped, frozenset(names) if names else None)
            return 200, fmt.content_type, body, (("Content-Encoding", "gzip"),) if gzipped else ()
        if path == "/":
            return 200, HTML, await app.page(collect=not conn.exempt), ()  # the watchdog's probe never waits
        return 404, PLAIN, ERROR_BODIES[404], ()

    # -- health
    def probe(self, timeout: float = 5.0) -> bool:
        """True if the server answers on its own socket (an HTTP status line, or a TLS handshake reply). The probe
        is exempt from connection caps and rate limits: a flood must not make the watchdog kill a working server."""
        host, port = self.socket.getsockname()[:2]
        host = {"::": "::1", "0.0.0.0": "127.0.0.1"}.get(host, host)
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as conn:
                conn.settimeout(timeout)
                conn.bind((host, 0))
                local = conn.getsockname()[1]
                self._probes.add(local)
                try:
                    conn.connect((host, port))
                    return self._probe_exchange(conn)
                finally:
                    self._probes.discard(local)
        except OSError:
            return False

    def _probe_exchange(self, conn: socket.socket) -> bool:
        request = b"HEAD / HTTP/1.0\r\n\r\n"
        if self.policy.tls is None:
            conn.sendall(request)
            return conn.recv(5) == b"HTTP/"
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        try:
            with client.wrap_socket(conn) as tls:
                tls.sendall(request)
                return tls.recv(5) == b"HTTP/"
        except ssl.SSLError:  # a server that requires client certificates still answered
            return True


async def _too_many(conn: _Connection):
    """429, answered late on an evictable connection: a flooder or brute forcer waits instead of keeping the event
    loop busy."""
    conn.parked = True
    try:
        await asyncio.sleep(BUSY_DELAY)
    finally:
        conn.parked = False
    return 429, PLAIN, ERROR_BODIES[429], (("Retry-After", "1"),)


def _http09(data: bytes) -> bool:
    """A complete first line of two words, method and target, without an HTTP version."""
    line, newline, _ = data.partition(b"\n")
    words = line.rstrip(b"\r").split(b" ")
    return bool(newline) and len(words) == 2 and words[0].isalpha() and words[1][:1] in (b"/", b"h", b"*")


def _trim_malloc():
    """Give the kernel back the heap pages a crowd of connections freed: glibc keeps them otherwise (1,000 silent
    TLS clients left 3.8 MB of RSS behind)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _loop_error(loop, context):
    """Whatever a connection's end raises (reset, broken TLS) is the client's business: one debug line."""
    log.debug("event loop: %s", context.get("message"), exc_info=context.get("exception"))


def _ipv6_available() -> bool:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
        return True
    except OSError:  # IPv6 disabled in this kernel or namespace
        return False


def resolve_listen_address(listen_address: str) -> Tuple[int, tuple]:
    """(address family, socket address) the server binds for listen_address; socket.gaierror (an OSError) when the
    host does not resolve. Whether the port is free is only known when binding."""
    host, port = parse_listen_address(listen_address)
    family = socket.AF_INET6 if (not host and _ipv6_available()) or ":" in host else socket.AF_INET
    if not host:
        return family, ("::" if family == socket.AF_INET6 else "0.0.0.0", port)
    return family, socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0][4]


def _listen(listen_address: str) -> socket.socket:
    family, address = resolve_listen_address(listen_address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not parse_listen_address(listen_address)[0]:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # :port = v4 and v6
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _san_allowed(cert: dict, allowed) -> bool:
    return any(value in allowed for _, value in (cert or {}).get("subjectAltName", ()))
