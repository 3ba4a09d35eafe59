"""Record the kernel's answers to every dump and /proc/net read of a full collection, for the golden replays.

    sudo .venv/bin/python tests/golden/record.py   # writes tests/golden/kernel.json

It builds a fresh network namespace holding sockets of every family this kernel has (tcp and udp over IPv4 and
IPv6 in most states, listeners with queued connections, unix stream/dgram/seqpacket, netlink, packet, mptcp,
raw), collects it with every configuration of tests/unit/test_golden.py while recording, and saves the
conversation. Afterwards run the golden tests with SOCKDIAG_UPDATE_GOLDEN=1 and review the diff of the .prom files.
"""

import os
import platform
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/

from golden.replay import SYSCTL, Recording  # noqa: E402
from helpers import NetNS, make_scraper, render  # noqa: E402

from sockdiag_exporter.diag.netlink import DiagSocket, open_netlink  # noqa: E402
from sockdiag_exporter.diag.procfs import ProcNet  # noqa: E402


class Recorder:
    def __init__(self):
        self.recording = Recording({}, {}, f"{platform.system()} {platform.release()}")

    def connect(self, receive_buffer, timeout):
        sock = open_netlink(receive_buffer, timeout)
        recording = self.recording

        class Recorded:
            current = None

            def send(self, data):
                request = bytes(data[16:])
                self.current = None if request in recording.dumps else recording.dumps.setdefault(request, [])
                return sock.send(data)

            def recv_into(self, buf, size, flags=0):
                n = sock.recv_into(buf, size, flags)
                if self.current is not None:
                    self.current.append(bytes(buf[:n]))
                return n

            def close(self):
                sock.close()

        return Recorded()


class RecordedProc(ProcNet):
    def __init__(self, files):
        super().__init__()
        self.files = files

    def read(self, name):
        text = super().read(name)
        self.files.setdefault(name, text)
        return text

    def sysctl(self, name):
        text = super().sysctl(name)
        self.files.setdefault(SYSCTL + name, text)
        return text


def populate(ns: NetNS) -> None:
    """Sockets of every family and many states, kept in ns.keep."""
    keep = ns.keep
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        web = socket.socket(family)
        web.bind((addr, 8080))
        web.listen(16)
        small = socket.socket(family)
        small.bind((addr, 9005))
        small.listen(1)
        keep += [web, small]
        for i in range(30):
            c = socket.create_connection((addr, 8080))
            s, _ = web.accept()
            keep += [c, s]
            if i % 3 == 0:
                c.send(b"x" * (i * 700 + 1))
            if i % 7 == 0:
                s.send(b"y" * 70000)
        for _ in range(4):  # time_wait
            c = socket.create_connection((addr, 8080))
            s, _ = web.accept()
            c.close()
            s.close()
        for _ in range(2):  # close_wait on the client, fin_wait2 on the server
            c = socket.create_connection((addr, 8080))
            s, _ = web.accept()
            s.shutdown(socket.SHUT_WR)
            keep += [c, s]
        for _ in range(2):  # the client closed it, the server did not: a fin_wait2 minisocket
            c = socket.create_connection((addr, 8080))
            s, _ = web.accept()
            c.close()
            keep.append(s)
        for _ in range(3):  # waiting in the accept queue (after the accept() calls above, which would take them)
            c = socket.create_connection((addr, 8080))
            keep.append(c)
        for _ in range(2):  # an SO_REUSEPORT pair on one address, one of them with a connection waiting
            shared = socket.socket(family)
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            shared.bind((addr, 9100))
            shared.listen(8)
            keep.append(shared)
        keep.append(socket.create_connection((addr, 9100)))
        for _ in range(2):  # the small listener: its queue full
            c = socket.socket(family)
            c.setblocking(False)
            c.connect_ex((addr, 9005))
            keep.append(c)
        dns = socket.socket(family, socket.SOCK_DGRAM)
        dns.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the smallest buffer: the third datagram is dropped
        dns.bind((addr, 5353))
        client = socket.socket(family, socket.SOCK_DGRAM)
        client.connect((addr, 5353))
        for _ in range(3):
            client.send(b"q" * 300)
        sender = socket.socket(family, socket.SOCK_DGRAM)
        sender.sendto(b"s", (addr, 5353))  # unconnected and autobound to an ephemeral port: a receiver, folded
        keep += [dns, client, sender]
        lite = socket.socket(family, socket.SOCK_DGRAM, 136)
        lite.bind((addr, 5354))
        keep.append(lite)
        raw = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMP if family == socket.AF_INET else 58)
        keep.append(raw)
        try:
            mp = socket.socket(family, socket.SOCK_STREAM, 262)
            mp.bind((addr, 7000))
            mp.listen(4)
            keep.append(mp)
        except OSError:
            pass
    for i in range(5):
        a, b = socket.socketpair()
        a.send(b"z" * (i * 1000))
        keep += [a, b]
    listener = socket.socket(socket.AF_UNIX)
    listener.bind("\0golden")
    listener.listen(3)
    keep.append(listener)
    for _ in range(2):
        c = socket.socket(socket.AF_UNIX)
        c.connect("\0golden")
        keep.append(c)
    seq = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    seq.bind("\0golden-seq")
    seq.listen(2)
    keep.append(seq)
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.bind("\0golden-dgram")
    e = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    e.sendto(b"hi" * 50, "\0golden-dgram")
    keep += [d, e]
    n = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    n.bind((0, 0))
    keep.append(n)
    keep.append(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)))
    keep.append(socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800)))


def main() -> None:
    from unit.test_golden import KERNEL_CONFIGS, RECORDING

    ns = NetNS()
    try:
        ns.run(populate, ns)
        time.sleep(0.5)  # handshakes and FINs settle; nothing is asserted on the live kernel here
        recorder = Recorder()

        def collect(config):
            render(make_scraper(config, make_diag=lambda: DiagSocket(connect=recorder.connect),
                                proc=RecordedProc(recorder.recording.proc)))

        for config in KERNEL_CONFIGS.values():
            ns.run(collect, config)
        recorder.recording.save(RECORDING)
        print(f"recorded {len(recorder.recording.dumps)} dumps and {len(recorder.recording.proc)} /proc files "
              f"into {RECORDING}")
    finally:
        ns.delete()


if __name__ == "__main__":
    main()
