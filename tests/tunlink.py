"""A point-to-point IP link between two network namespaces with chosen delay and loss, without netem.

Each namespace gets a TUN device; a forwarder thread in the test copies every IP packet read from one device to
the other after `delay` seconds, unless it drops it: a fraction `loss` of them (a seeded generator, so a run can be
repeated), or all of them while `blackhole` is set. Both ends see a real path: the kernel's own TCP retransmits,
measures RTT and gives up on it.
"""

import fcntl
import heapq
import os
import random
import select
import struct
import subprocess
import threading
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


class TunLink:
    """ns_a (address a) <-> ns_b (address b) through tun devices named `device` in each; close() removes it."""

    def __init__(self, ns_a, ns_b, a="10.77.0.1", b="10.77.0.2", delay=0.0, loss=0.0, seed=1, device="sdtun0"):
        self.a, self.b = a, b
        self.delay, self.loss = delay, loss
        self.blackhole = False
        self.forwarded = self.dropped = 0
        self._random = random.Random(seed)
        self._fds = []
        for ns, local, peer in ((ns_a, a, b), (ns_b, b, a)):
            self._fds.append(ns.run(_open_tun, device))  # the device is made in the namespace of the opening thread
            subprocess.run(["ip", "-n", ns.name, "addr", "add", f"{local}/32", "peer", f"{peer}/32", "dev", device],
                           check=True)
            subprocess.run(["ip", "-n", ns.name, "link", "set", device, "up"], check=True)
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._forward, name="tunlink", daemon=True)
        self._thread.start()

    def _forward(self):
        pending = []  # (due, sequence, fd to write, packet)
        sequence = 0
        fds = self._fds + [self._stop_read]
        while True:
            timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
            ready, _, _ = select.select(fds, [], [], timeout)
            if self._stop_read in ready:
                return
            for fd in ready:
                out = self._fds[1] if fd == self._fds[0] else self._fds[0]
                while True:
                    try:
                        packet = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if self.blackhole or (self.loss and self._random.random() < self.loss):
                        self.dropped += 1
                        continue
                    sequence += 1
                    heapq.heappush(pending, (time.monotonic() + self.delay, sequence, out, packet))
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, _, out, packet = heapq.heappop(pending)
                try:
                    os.write(out, packet)
                    self.forwarded += 1
                except OSError:  # the device went away with its namespace
                    pass

    def close(self):
        os.write(self._stop_write, b"x")
        self._thread.join(5)
        for fd in self._fds + [self._stop_read, self._stop_write]:
            os.close(fd)
