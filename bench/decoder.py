"""Decoder micro-benchmark: the exporter's decoding of recorded kernel dumps, in nanoseconds per message.

    sudo .venv/bin/python -m bench.decoder record [--pairs 9000] [--out FILE]   # dumps of a real population
    .venv/bin/python -m bench.decoder run [FILE] [--repeat 15]                  # decode them, no kernel involved

`record` builds a population in a fresh network namespace (established TCP connections over IPv4 and IPv6, about
12% TIME_WAIT interleaved with them as the kernel's hash orders them, unread data on some, unix socket pairs) and
keeps every receive buffer of the dumps the exporter makes. `run` replays those buffers through DiagSocket.dump()
(the decoder and its receive loop, with a socket that hands out the recorded buffers) for each scenario, alternating
the scenarios round by round, and prints the minimum and median time per message. Nothing but the decoder is timed,
so two trees can be compared on the same recording in the same run.
"""

import argparse
import functools
import os
import pickle
import socket
import statistics
import struct
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "exporter"))

from sockdiag_exporter.diag import requests  # noqa: E402
from sockdiag_exporter.diag.netlink import DiagSocket, open_netlink  # noqa: E402
from sockdiag_exporter.diag.tally import Detail, port_table, port_tables  # noqa: E402

DEFAULT_FILE = os.path.join(HERE, "results", "decoder-dumps.pickle")
BOUNDS = (0, 1024, 4096, 16384, 65536, 262144, 1 << 20, 4 << 20, 16 << 20)  # the default histogram buckets
ESTABLISHED_ONLY = 1 << 1  # TCP_ESTABLISHED


def scenarios():
    """name -> (request, layout, detail keyword): what each scenario dumps and how it decodes it."""
    tcp = requests.INET_ALL_STATES & ~requests.LISTEN_STATES
    return {
        "tcp, established only": (requests.inet(socket.AF_INET, 6, ESTABLISHED_ONLY), requests.INET_LAYOUT, None),
        "tcp, with TIME_WAIT": (requests.inet(socket.AF_INET, 6, tcp), requests.INET_LAYOUT, None),
        "tcp, histograms + 2 port groups": (requests.inet(socket.AF_INET, 6, tcp), requests.INET_LAYOUT, "detail"),
        "tcp, histograms": (requests.inet(socket.AF_INET, 6, tcp), requests.INET_LAYOUT, "bounds"),
        "tcp, exporter defaults": (requests.inet(socket.AF_INET, 6, tcp), requests.INET_LAYOUT, "defaults"),
        "tcp, memory info": (requests.inet(socket.AF_INET, 6, tcp, memory=True), requests.INET_MEMORY_LAYOUT, None),
        "unix, histograms": (requests.unix(), requests.UNIX_LAYOUT, "bounds"),
    }


def detail_for(kind) -> Detail:
    if kind is None:
        return Detail()
    if kind == "bounds":
        return Detail(BOUNDS)
    if kind == "defaults":  # as the tcp collector asks by default: ephemeral ports counted, half-open sockets found
        return Detail(BOUNDS, ephemeral=port_table(low=30000, high=65000), local_state=3)
    return Detail(BOUNDS, port_tables([((8080,), ()), ((), (8080,))]))


def with_seq(buffers, seq: int) -> list:
    """The buffers with every message's sequence number set to seq."""
    out = []
    for buf in buffers:
        buf, off = bytearray(buf), 0
        while off + 16 <= len(buf):
            struct.pack_into("=I", buf, off + 8, seq)
            off += (struct.unpack_from("=I", buf, off)[0] + 3) & ~3
        out.append(bytes(buf))
    return out


class Replay:
    """A netlink socket stand-in that answers with recorded buffers: their sequence number set beforehand to a
    new DiagSocket's first (1), so that the time measured is the decoder's alone."""

    def __init__(self, buffers):
        self.buffers = with_seq(buffers, 1)
        self.pending = []

    def send(self, data):
        self.pending = list(self.buffers)
        return len(data)

    def recv_into(self, buf, size, flags=0):
        data = self.pending.pop(0)
        buf[: len(data)] = data
        return len(data)

    def close(self):
        pass


class Recorder:
    """A real netlink socket that keeps a copy of every buffer received."""

    def __init__(self, size, timeout):
        self.sock = open_netlink(size, timeout)
        self.buffers = []

    @classmethod
    def open(cls, made: list, size: int, timeout: float) -> "Recorder":
        made.append(cls(size, timeout))
        return made[-1]

    def send(self, data):
        return self.sock.send(data)

    def recv_into(self, buf, size, flags=0):
        got = self.sock.recv_into(buf, size, flags)
        self.buffers.append(bytes(buf[:got]))
        return got

    def close(self):
        self.sock.close()


def messages(buffers) -> int:
    count = 0
    for buf in buffers:
        off = 0
        while off + 16 <= len(buf):
            length, mtype = struct.unpack_from("=IH", buf, off)
            count += mtype == 20
            off += (length + 3) & ~3
    return count


def run(args) -> None:
    with open(args.file, "rb") as f:
        recorded = pickle.load(f)
    table = scenarios()
    times = {name: [] for name in table}
    replays = {name: Replay(recorded[name]) for name in table}
    for _ in range(args.repeat):
        for name, (request, layout, kind) in table.items():
            diag = DiagSocket(connect=lambda size, timeout, replay=replays[name]: replay)
            detail = detail_for(kind)
            started = time.perf_counter()
            diag.dump(request, layout, name, detail)
            times[name].append(time.perf_counter() - started)
    print(f"{'scenario':34} {'messages':>9} {'min ns/msg':>11} {'median ns/msg':>14}")
    for name, samples in times.items():
        n = messages(recorded[name])
        print(f"{name:34} {n:9d} {min(samples) / n * 1e9:11.0f} {statistics.median(samples) / n * 1e9:14.0f}")


def record(args) -> None:
    ns = f"bench-decoder-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=1000000",
                        "net.ipv4.ip_local_port_range=30000 65000"], check=True)
        out = os.path.abspath(args.out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "bench.decoder", "_record_inside",
                        str(args.pairs), out], check=True, cwd=os.path.dirname(HERE))
        print(f"recorded into {out}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def record_inside(pairs: int, out: str) -> None:
    """In the namespace: make the population, then record every scenario's dump buffers."""
    keep = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        server = socket.socket(family)
        server.bind((host, 8080))
        server.listen(4096)
        keep.append(server)
        for i in range(pairs // 2):
            c = socket.create_connection((host, 8080))
            s, _ = server.accept()
            if i % 8 == 0:  # client closes first: TIME_WAIT on the client's side
                c.close()
                s.close()
                continue
            if i % 5 == 0:
                c.send(b"u" * (i % 3000 + 1))
            keep += [c, s]
    for i in range(2000):
        a, b = socket.socketpair()
        if i % 4 == 0:
            a.send(b"x" * (i + 1))
        keep += [a, b]
    time.sleep(0.5)  # handshakes and FINs land; nothing is measured here
    recorded = {}
    for name, (request, layout, _) in scenarios().items():
        made = []
        DiagSocket(connect=functools.partial(Recorder.open, made)).dump(request, layout, name)
        recorded[name] = made[-1].buffers
    with open(out, "wb") as f:
        pickle.dump(recorded, f)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.decoder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record dumps of a population (root: makes a network namespace)")
    rec.add_argument("--pairs", type=int, default=9000, help="TCP connections (two sockets each) to make")
    rec.add_argument("--out", default=DEFAULT_FILE)
    play = sub.add_parser("run", help="decode the recorded dumps and print ns per message")
    play.add_argument("file", nargs="?", default=DEFAULT_FILE)
    play.add_argument("--repeat", type=int, default=15)
    inside = sub.add_parser("_record_inside")
    inside.add_argument("pairs", type=int)
    inside.add_argument("out")
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    elif args.command == "run":
        run(args)
    else:
        record_inside(args.pairs, args.out)


if __name__ == "__main__":
    main()
