"""Netlink I/O for sock_diag: one socket, dump requests out, receive buffers into a streaming decoder."""

import errno
import socket
import struct
import threading

from . import constants as c
from .decoder import RecordDecoder, counting_decoder
from .errors import DiagError, DiagInterrupted, DiagMalformed, DiagRetryable, from_errno
from .layout import Layout
from .runs import MIN_RUN
from .tally import NO_DETAIL, Detail, Tally

_HDR = struct.Struct("=IHHII")
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

# Receive buffers, one per size, shared by every DiagSocket (one per network namespace): dumps run one at a time,
# the lock serialises the rare overlap (a reload while a collection is in flight).
_BUFFERS: dict = {}
_BUFFERS_LOCK = threading.Lock()


def _shared_buffer(size: int):
    with _BUFFERS_LOCK:
        if size not in _BUFFERS:
            buf = bytearray(size)
            mv = memoryview(buf)
            _BUFFERS[size] = (buf, mv, mv.cast("I"), threading.Lock())
        return _BUFFERS[size]


class DiagStats:
    """Counts of dump requests, kept by the exporter for its whole life (a reload makes new sockets, not new
    counts: a counter never goes back)."""

    __slots__ = ("dumps", "retries")

    def __init__(self):
        self.dumps = 0  # dump requests sent, retries included
        self.retries = 0  # dumps started again after an interruption or a transient error


def open_netlink(receive_buffer: int, timeout: float) -> socket.socket:
    """A NETLINK_SOCK_DIAG socket in the calling thread's network namespace."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, c.NETLINK_SOCK_DIAG)
    except OSError as e:
        raise from_errno(e.errno or errno.EIO, "opening a NETLINK_SOCK_DIAG socket") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, receive_buffer)
    except OSError:  # needs CAP_NET_ADMIN; the plain option is capped by net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(timeout)
    sock.bind((0, 0))
    return sock


class DiagSocket:
    """A NETLINK_SOCK_DIAG socket, opened lazily in the calling thread's network namespace.

    Not thread-safe: one dump at a time. After any failure the socket is closed (it may still hold the rest of
    the failed dump) and the next dump opens a new one. connect(receive_buffer, timeout) opens it: the kernel's
    netlink by default, a recorded conversation in replay tests. min_run=0 switches the decoders' run path off.
    """

    def __init__(self, receive_buffer: int = 1 << 20, timeout: float = 10.0, retries: int = 3,
                 stats: DiagStats = None, connect=open_netlink, min_run: int = MIN_RUN):
        self.receive_buffer = receive_buffer
        self.timeout = timeout
        self.retries = retries
        self.stats = stats if stats is not None else DiagStats()
        self.connect = connect
        self.min_run = min_run
        self._buf, self._mv, self._u32, self._buf_lock = _shared_buffer(receive_buffer)
        self._sock = None
        self._seq = 0

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def dump(self, request: bytes, layout: Layout, what: str, detail: Detail = NO_DETAIL) -> Tally:
        """Run one dump to completion and return its tally; retries interrupted or transiently failed dumps."""
        return self._dump(request, what, lambda seq: counting_decoder(layout, seq, what, detail, self.min_run)).tally

    def records(self, request: bytes, layout: Layout, what: str, extract) -> list:
        """Run one dump to completion and return extract(buf, payload offset, end) of every message."""
        return self._dump(request, what, lambda seq: RecordDecoder(layout, seq, what, extract)).records

    def _dump(self, request: bytes, what: str, make_decoder):
        failure = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            try:
                decoder = self._dump_once(request, what, make_decoder)
            except DiagRetryable as e:
                failure = e
                continue
            if not decoder.interrupted:
                return decoder
            failure = DiagInterrupted(f"{what}: dump interrupted (NLM_F_DUMP_INTR) {attempt + 1} times in a row")
        raise failure

    def _dump_once(self, request: bytes, what: str, make_decoder):
        with self._buf_lock:
            return self._dump_locked(request, what, make_decoder)

    def _dump_locked(self, request: bytes, what: str, make_decoder):
        if self._sock is None:
            self._sock = self.connect(self.receive_buffer, self.timeout)
        self._seq = self._seq % 0xFFFFFFFF + 1
        decoder = make_decoder(self._seq)
        header = _HDR.pack(c.NLMSG_HDRLEN + len(request), c.SOCK_DIAG_BY_FAMILY, c.NLM_F_REQUEST | c.NLM_F_DUMP,
                           self._seq, 0)
        self.stats.dumps += 1
        try:
            self._sock.send(header + request)
            size = len(self._buf)
            while True:
                n = self._sock.recv_into(self._buf, size, socket.MSG_TRUNC)
                if n > size:
                    raise DiagMalformed(f"{what}: a {n}-byte reply does not fit the {size}-byte receive buffer")
                if n == 0:
                    raise DiagMalformed(f"{what}: empty read from the kernel")
                if decoder.feed(self._mv, self._u32, n):
                    return decoder
        except DiagError:
            self.close()
            raise
        except socket.timeout:
            self.close()
            raise DiagRetryable(f"{what}: no reply from the kernel within {self.timeout:g} s") from None
        except OSError as e:
            self.close()
            raise from_errno(e.errno or errno.EIO, what) from None
