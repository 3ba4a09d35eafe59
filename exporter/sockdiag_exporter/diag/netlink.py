"""Netlink I/O for sock_diag: one socket, dump requests out, receive buffers into a streaming decoder."""

import errno
import select
import socket
import struct
import threading
from queue import SimpleQueue

from . import constants as c
from .decoder import RecordDecoder, counting_decoder
from .errors import DiagError, DiagInterrupted, DiagMalformed, DiagRetryable, from_errno
from .layout import Layout
from .mmsg import MSG_TRUNC, Vector, address
from .runs import MIN_RUN
from .tally import NO_DETAIL, Detail, Tally

_HDR = struct.Struct("=IHHII")
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

RECEIVE_SIZE = 65536  # a dump's datagrams are at most 32 KiB: the kernel caps them at SKB_WITH_OVERHEAD(32768)
# Receive buffers per dump: how many datagrams one recvmmsg() takes, and how far a receiving thread may run ahead
# of the decoding one. Each receive is a hand-over of the GIL between the collection's workers (a thread back from
# the kernel waits for it): 2 cores, 100k sockets, same runs, full scrape with 1 datagram a receive against 4:
# 0.070 -> 0.059 s; 4 -> 8: 0.062 -> 0.058 s (RSS 43.2 -> 43.7 MB: a ring per dump in flight); 8 -> 16: 0.062 ->
# 0.060 s and +1.1 MB RSS.
RING = 8


class _Ring:
    """The receive buffers of one dump in flight, each with its byte and u32 views, and a recvmmsg vector over
    them all."""

    def __init__(self):
        self.buffers = []
        for _ in range(RING):
            buf = bytearray(RECEIVE_SIZE)
            mv = memoryview(buf)
            self.buffers.append((buf, mv, mv.cast("I")))
        self.vector = Vector([(address(buf), RECEIVE_SIZE) for buf, _, _ in self.buffers])


# Rings are shared by every DiagSocket (one per network namespace and parallel dump): one per dump in flight, so
# memory grows with the dumps running at once, never with the socket or namespace count.
_RINGS = []
_RINGS_LOCK = threading.Lock()


def _take_ring() -> _Ring:
    with _RINGS_LOCK:
        return _RINGS.pop() if _RINGS else _Ring()


def _give_ring(ring: _Ring) -> None:
    with _RINGS_LOCK:
        _RINGS.append(ring)


def _ends_dump(buf, n: int, seq: int) -> bool:
    """Whether a received datagram is the last of dump seq: the kernel puts NLMSG_DONE at the very end of the
    dump's last datagram, and a refused request is one NLMSG_ERROR alone."""
    if n >= _DONE_SIZE:
        length, mtype, _, msg_seq = _TAIL.unpack_from(buf, n - _DONE_SIZE)
        if length == _DONE_SIZE and mtype == c.NLMSG_DONE and msg_seq == seq:
            return True
    if n >= c.NLMSG_HDRLEN:
        length, mtype, _, msg_seq = _TAIL.unpack_from(buf, 0)
        return length == n and mtype == c.NLMSG_ERROR and msg_seq == seq
    return False


_TAIL = struct.Struct("=IHHI")  # nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq
_DONE_SIZE = c.NLMSG_HDRLEN + 4  # NLMSG_DONE with its errno


class DiagStats:
    """Counts of dump requests, kept by the exporter for its whole life (a reload makes new sockets, not new
    counts: a counter never goes back). Parallel dumps add to them at once: under a lock."""

    def __init__(self):
        self.dumps = 0  # dump requests sent, retries included
        self.retries = 0  # dumps started again after an interruption or a transient error
        self._lock = threading.Lock()

    def add(self, dumps: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.dumps += dumps
            self.retries += retries


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
    pipelined=False receives in the decoding thread, up to RING datagrams per recvmmsg() (no receiver thread:
    where other threads keep the cores busy anyway).
    """

    def __init__(self, receive_buffer: int = 1 << 20, timeout: float = 10.0, retries: int = 3,
                 stats: DiagStats = None, connect=open_netlink, min_run: int = MIN_RUN, pipelined: bool = True):
        self.receive_buffer = receive_buffer
        self.timeout = timeout
        self.retries = retries
        self.stats = stats if stats is not None else DiagStats()
        self.connect = connect
        self.min_run = min_run
        self.pipelined = pipelined
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

    def decode(self, request: bytes, what: str, make_decoder):
        """Run one dump to completion through the decoder make_decoder(seq) returns (a Decoder), and return it."""
        return self._dump(request, what, make_decoder)

    def _dump(self, request: bytes, what: str, make_decoder):
        failure = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.add(retries=1)
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
        ring = _take_ring()
        try:
            return self._dump_with(ring, request, what, make_decoder)
        finally:
            _give_ring(ring)

    def _dump_with(self, ring: _Ring, request: bytes, what: str, make_decoder):
        """One dump. Not pipelined: a ring of datagrams at a time (recvmmsg), then decoded. Pipelined: the first
        datagram received here; if more follow, a receiving thread fetches them into the ring's other buffers while
        this one decodes (the kernel makes each datagram inside recv(), with the GIL released, so making the next
        overlaps decoding this one)."""
        if self._sock is None:
            self._sock = self.connect(self.receive_buffer, self.timeout)
        sock = self._sock
        self._seq = seq = self._seq % 0xFFFFFFFF + 1
        decoder = make_decoder(seq)
        header = _HDR.pack(c.NLMSG_HDRLEN + len(request), c.SOCK_DIAG_BY_FAMILY, c.NLM_F_REQUEST | c.NLM_F_DUMP,
                           seq, 0)
        self.stats.add(dumps=1)
        receiver = None
        try:
            sock.send(header + request)
            if not self.pipelined and isinstance(sock, socket.socket):
                return self._receive_batches(sock, ring, decoder, what)
            buf, mv, u32 = ring.buffers[0]
            n = self._received(sock.recv_into(buf, RECEIVE_SIZE, socket.MSG_TRUNC), what)
            if self.pipelined and not _ends_dump(buf, n, seq):
                receiver = _Receiver(sock, ring.buffers[1:], seq)
            while not decoder.feed(mv, u32, n):
                if receiver is None:  # the end was not where the kernel puts it: read on in this thread
                    n = self._received(sock.recv_into(buf, RECEIVE_SIZE, socket.MSG_TRUNC), what)
                    continue
                receiver.free.put((buf, mv, u32))  # decoded: free for the receiver again
                (buf, mv, u32), n = receiver.next()
                n = self._received(n, what)
            if receiver is not None and not receiver.finish():
                self._sock = None  # the receiver still waits on it: it closes the socket when it wakes
            return decoder
        except DiagError:
            self._abandon(receiver)
            raise
        except socket.timeout:
            self._abandon(receiver)
            raise DiagRetryable(f"{what}: no reply from the kernel within {self.timeout:g} s") from None
        except OSError as e:
            self._abandon(receiver)
            raise from_errno(e.errno or errno.EIO, what) from None

    def _receive_batches(self, sock: socket.socket, ring: _Ring, decoder, what: str):
        """The dump's datagrams received a ring at a time (recvmmsg), each decoded in turn. Test doubles of the
        socket (replays, recordings) take the one-at-a-time path above."""
        fd, vector, buffers = sock.fileno(), ring.vector, ring.buffers
        while True:
            count = vector.receive(fd, MSG_TRUNC)
            if not count:  # nothing there yet: the kernel makes the next datagram inside the previous receive
                if not _readable(fd, self.timeout):
                    raise socket.timeout
                continue
            for i in range(count):
                _, mv, u32 = buffers[i]
                if decoder.feed(mv, u32, self._received(vector.lengths[i], what)):
                    return decoder

    @staticmethod
    def _received(n: int, what: str) -> int:
        if n > RECEIVE_SIZE:
            raise DiagMalformed(f"{what}: a {n}-byte reply does not fit the {RECEIVE_SIZE}-byte receive buffer")
        if n == 0:
            raise DiagMalformed(f"{what}: empty read from the kernel")
        return n

    def _abandon(self, receiver) -> None:
        """After a failure: the socket may still hold the rest of the dump; close it (or leave it to the receiver
        if it is still reading)."""
        if receiver is None or receiver.finish():
            self.close()
        else:
            self._sock = None


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


class _Receiver:
    """A thread receiving the rest of one dump into free buffers, handing them over in order."""

    def __init__(self, sock, buffers, seq: int):
        self.sock, self.seq = sock, seq
        self.free, self.filled = SimpleQueue(), SimpleQueue()
        for entry in buffers:
            self.free.put(entry)
        self.stop = False
        self._lock = threading.Lock()
        self._ended = self._close_when_ended = False
        self.thread = threading.Thread(target=self._run, name="netlink receiver", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                entry = self.free.get()
                if entry is None or self.stop:
                    return
                try:
                    n = self.sock.recv_into(entry[0], RECEIVE_SIZE, socket.MSG_TRUNC)
                except BaseException as e:  # handed to the decoding thread
                    self.filled.put((None, e))
                    return
                self.filled.put((entry, n))
                if n > RECEIVE_SIZE or _ends_dump(entry[0], n, self.seq):
                    return
        finally:
            with self._lock:
                self._ended = True
                close = self._close_when_ended
            if close:
                self.sock.close()

    def next(self):
        """The next received buffer and its length, in order; what the receiving thread raised, raised."""
        entry, n = self.filled.get()
        if entry is None:
            raise n
        return entry, n

    def finish(self) -> bool:
        """Stop receiving; True once the thread has ended. False if it still waits in recv(): it then closes the
        socket itself when it wakes (the dump was left unfinished, or the kernel's end was not at the tail)."""
        self.stop = True
        self.free.put(None)
        self.thread.join(0.5)
        with self._lock:
            if self._ended:
                return True
            self._close_when_ended = True
            return False
