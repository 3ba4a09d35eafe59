"""A subscriber to the sock_diag destroy events of one network namespace, drained by a background thread.

A NETLINK_SOCK_DIAG socket joined to the SKNLGRP_*_DESTROY groups receives one message each time a full TCP or UDP
socket of the namespace it was opened in is freed (no privilege needed). Each message is a datagram of its own: the
thread takes up to BATCH of them per recvmmsg() call into fixed slots of one buffer and hands them to a FlowDecoder,
under a lock that readers (snapshot) take too. When the socket's receive buffer overflows the kernel
drops events and the next receive fails with ENOBUFS: that is counted (``overruns``), never hidden.

The thread holds no reference to its Subscriber: a subscriber that is dropped without close() is stopped when it is
garbage-collected.
"""

import errno
import logging
import os
import select
import socket
import threading
import time
import weakref
from typing import Optional

from . import constants as c
from .errors import from_errno
from .flows import FlowDecoder, FlowTally
from .mmsg import Vector, address

log = logging.getLogger(__name__)

DESTROY_GROUPS = (c.SKNLGRP_INET_TCP_DESTROY, c.SKNLGRP_INET_UDP_DESTROY, c.SKNLGRP_INET6_TCP_DESTROY,
                  c.SKNLGRP_INET6_UDP_DESTROY)
SLOT = 1024  # bytes per datagram: a TCP event is 380 on 6.18 (a longer one is counted as malformed)
BATCH = 64  # datagrams per recvmmsg() call: 64 KiB of buffer per namespace
# After draining, wait this long before looking again, so that events arrive in batches: at 40,000 events/s,
# waking for each one or two cost 9.8 ms of CPU per 1,000 events, batches of about 200 cost 1.9 ms (bench churn).
# The receive buffer holds about 13,000 events at 8 MiB (1,280 bytes of kernel memory each).
COALESCE = 0.005
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class Batch:
    """BATCH receive slots of SLOT bytes in one buffer, and the recvmmsg vector pointing at them."""

    def __init__(self, count: int = BATCH, slot: int = SLOT):
        self.count, self.slot = count, slot
        self.buf = bytearray(count * slot)
        self.view = memoryview(self.buf)
        base = address(self.buf)
        self._vector = Vector([(base + i * slot, slot) for i in range(count)])
        self.lengths = self._vector.lengths

    def receive(self, fd: int) -> int:
        """Datagrams received without waiting (0 if none); raises OSError (ENOBUFS after an overrun)."""
        return self._vector.receive(fd)


def open_subscriber(receive_buffer: int, groups=DESTROY_GROUPS) -> socket.socket:
    """A NETLINK_SOCK_DIAG socket of the calling thread's network namespace, in the given multicast groups."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, c.NETLINK_SOCK_DIAG)
    except OSError as e:
        raise from_errno(e.errno or errno.EIO, "opening a NETLINK_SOCK_DIAG socket") from None
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, receive_buffer)
        except OSError:  # needs CAP_NET_ADMIN; the plain option is capped by net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((0, 0))
        for group in groups:
            sock.setsockopt(c.SOL_NETLINK, c.NETLINK_ADD_MEMBERSHIP, group)
    except OSError as e:
        sock.close()
        raise from_errno(e.errno or errno.EIO, "joining the sock_diag destroy groups") from None
    sock.setblocking(False)
    return sock


class Stats:
    """What the drain thread reports: written by it, read by anyone."""

    __slots__ = ("overruns", "error", "running")

    def __init__(self):
        self.overruns = 0  # receives that failed with ENOBUFS: the kernel dropped events
        self.error = ""  # why the thread stopped, when it stopped on its own
        self.running = False


def _drain(sock: socket.socket, wake: int, decoder: FlowDecoder, lock: threading.Lock, stats: Stats,
           batch: Batch) -> None:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake, select.POLLIN)
    fd = sock.fileno()
    lengths, view, count, slot = batch.lengths, batch.view, batch.count, batch.slot
    try:
        while True:
            ready = poller.poll()
            if any(f == wake for f, _ in ready):
                return
            while True:
                try:
                    n = batch.receive(fd)
                except OSError as e:
                    if e.errno == errno.ENOBUFS:
                        stats.overruns += 1
                        continue
                    raise
                if not n:
                    break
                with lock:
                    decoder.feed_slots(view, n, slot, lengths)
                if n < count:
                    break
            time.sleep(COALESCE)
    except Exception as e:  # reported through stats and the collector's metrics, not a dead thread's traceback
        stats.error = f"{type(e).__name__}: {e}"
        log.debug("destroy event subscriber stopped", exc_info=True)
    finally:
        stats.running = False


def _stop(sock: socket.socket, wake_write: int, wake_read: int, thread: threading.Thread) -> None:
    try:
        os.write(wake_write, b"x")
    except OSError:
        pass
    if thread.is_alive() and thread is not threading.current_thread():
        thread.join(5)
    for fd in (wake_write, wake_read):
        try:
            os.close(fd)
        except OSError:
            pass
    sock.close()


class Subscriber:
    """The destroy events of the network namespace start() is called in, counted by a FlowDecoder.

    start() raises DiagError when the kernel refuses the socket or the groups (kernels before 4.2 have no destroy
    groups); stats.error says why the thread stopped when it stops on its own.
    """

    def __init__(self, decoder: FlowDecoder, receive_buffer: int, groups=DESTROY_GROUPS):
        self.decoder = decoder
        self.receive_buffer = receive_buffer
        self.groups = tuple(groups)
        self.lock = threading.Lock()
        self.stats = Stats()
        self.effective_buffer = 0  # what the kernel granted (SO_RCVBUF reads back twice the request)
        self._finalizer: Optional[weakref.finalize] = None

    def start(self) -> "Subscriber":
        """Open the socket in the calling thread's namespace and start draining it; again after a failure (the
        counters carry on)."""
        self.close()
        self.stats.error = ""
        sock = open_subscriber(self.receive_buffer, self.groups)
        self.effective_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        wake_read, wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.stats.running = True
        thread = threading.Thread(target=_drain, name="destroy events", daemon=True,
                                  args=(sock, wake_read, self.decoder, self.lock, self.stats, Batch()))
        thread.start()
        self._finalizer = weakref.finalize(self, _stop, sock, wake_write, wake_read, thread)
        return self

    @property
    def running(self) -> bool:
        return self.stats.running

    def snapshot(self) -> FlowTally:
        """A copy of the counters (the thread keeps adding to the originals)."""
        with self.lock:
            return self.decoder.tally.copy()

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
