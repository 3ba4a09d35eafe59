"""The in-namespace half of the benchmark: measures what must run inside the namespace, on request.

    python -m bench.agent        (inside the namespace; one command per line on stdin, one JSON line back)

floor tcp|unix          seconds to receive the tcp (IPv4 and IPv6) or unix dumps with no decoding at all
collect NAME            seconds one collector takes in-process (configuration: $SOCKDIAG_BENCH_CONFIG or defaults)
analyze NAME            the same, with what collectors keep between collections forgotten first: the tcp
                        collector's ephemeral-port analysis (done once a minute by default) is then due
get URL                 seconds to fetch URL completely
concurrent URL N        N simultaneous fetches: the slowest one's seconds and the dump counter before and after
"""

import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exporter"))

from sockdiag_exporter.collectors import REGISTRY  # noqa: E402
from sockdiag_exporter.collectors.base import Samples  # noqa: E402
from sockdiag_exporter.config import Config, load  # noqa: E402
from sockdiag_exporter.diag import requests  # noqa: E402
from sockdiag_exporter.diag.netlink import DiagStats  # noqa: E402
from sockdiag_exporter.plan import build_plan  # noqa: E402

FLOOR_REQUESTS = {
    "tcp": [requests.inet(socket.AF_INET, socket.IPPROTO_TCP), requests.inet(socket.AF_INET6, socket.IPPROTO_TCP)],
    "unix": [requests.unix()],
}


def floor(which: str) -> float:
    """Receive the dumps and look only for NLMSG_DONE: the kernel's share of a collection."""
    buf = bytearray(1 << 20)
    started = time.perf_counter()
    for req in FLOOR_REQUESTS[which]:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
        s.setsockopt(socket.SOL_SOCKET, 33, 1 << 20)  # SO_RCVBUFFORCE
        s.bind((0, 0))
        s.send(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req)
        while True:
            n = s.recv_into(buf)
            if n >= 20 and struct.unpack_from("=IH", buf, n - 20) == (20, 3):
                break
        s.close()
    return time.perf_counter() - started


CONTEXT = build_plan(load(os.environ["SOCKDIAG_BENCH_CONFIG"]) if os.environ.get("SOCKDIAG_BENCH_CONFIG")
                     else Config(), DiagStats()).own


def collect(name: str) -> float:
    started = time.perf_counter()
    REGISTRY[name].collect(CONTEXT, Samples())
    return time.perf_counter() - started


def analyze(name: str) -> float:
    CONTEXT.kept.clear()
    return collect(name)


def get(url: str) -> float:
    started = time.perf_counter()
    urllib.request.urlopen(url, timeout=120).read()
    return time.perf_counter() - started


def dumps(url: str) -> float:
    for line in urllib.request.urlopen(url, timeout=120).read().decode().splitlines():
        if line.startswith("sockdiag_netlink_dumps_total "):
            return float(line.split()[1])
    raise RuntimeError("no sockdiag_netlink_dumps_total")


def concurrent(url: str, n: int) -> dict:
    """n scrapes released together; how many collections (sets of kernel dumps) they cost."""
    per_collection = -dumps(url) + dumps(url)
    before = dumps(url)
    barrier = threading.Barrier(n)
    times = []

    def one():
        barrier.wait()
        times.append(get(url))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = dumps(url)  # a collection of its own, as is `before`'s: one set of dumps to take out
    dumps_taken = after - before - per_collection
    return {"slowest": max(times), "scrapes": n, "dumps": dumps_taken, "dumps_per_collection": per_collection,
            "collections": dumps_taken / per_collection}


def main():
    commands = {"floor": floor, "collect": collect, "analyze": analyze, "get": get,
                "concurrent": lambda url, n: concurrent(url, int(n))}
    for line in sys.stdin:
        words = line.split()
        try:
            result = commands[words[0]](*words[1:])
        except Exception as e:  # reported to the orchestrator, which decides
            result = {"error": f"{words[0]}: {type(e).__name__}: {e}"}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
