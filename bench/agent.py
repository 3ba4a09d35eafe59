"""The in-namespace half of the benchmark: measures what must run inside the namespace, on request.

    python -m bench.agent        (inside the namespace; one command per line on stdin, one JSON line back)

floor tcp|unix|tcp_health|all
                        seconds to receive the tcp (IPv4 and IPv6), unix or tcp_health dumps (with the configuration's
                        port filter), or every dump one collection makes (one after another), with no decoding at all
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
import http.client
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exporter"))

from sockdiag_exporter.collectors import REGISTRY  # noqa: E402
from sockdiag_exporter.collectors.base import Samples  # noqa: E402
from sockdiag_exporter.collectors.flows import ListenerSlots  # noqa: E402
from sockdiag_exporter.collectors.tcp_health import dump_scope  # noqa: E402
from sockdiag_exporter.config import Config, load  # noqa: E402
from sockdiag_exporter.diag import health, requests  # noqa: E402
from sockdiag_exporter.collectors.base import Context  # noqa: E402
from sockdiag_exporter.diag.netlink import DiagSocket, DiagStats, open_netlink  # noqa: E402
from sockdiag_exporter.plan import build_plan  # noqa: E402
from sockdiag_exporter.scrape import Scraper  # noqa: E402

FLOOR_REQUESTS = {
    "tcp": [requests.inet(socket.AF_INET, socket.IPPROTO_TCP), requests.inet(socket.AF_INET6, socket.IPPROTO_TCP)],
    "unix": [requests.unix()],
}


def floor(which: str) -> float:
    """Receive the dumps and look only for NLMSG_DONE: the kernel's share of a collection."""
    buf = bytearray(1 << 20)
    started = time.perf_counter()
    for req in (ALL_REQUESTS if which == "all" else FLOOR_REQUESTS[which]):
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
        s.setsockopt(socket.SOL_SOCKET, 33, 1 << 20)  # SO_RCVBUFFORCE
        s.bind((0, 0))
        s.settimeout(30)
        s.send(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req)
        while True:
            n = s.recv_into(buf)
            if n >= 20 and struct.unpack_from("=IH", buf, n - 20) == (20, 3):
                break  # NLMSG_DONE ends the dump
            if n >= 16 and struct.unpack_from("=IH", buf, 0) == (n, 2):
                break  # NLMSG_ERROR alone: a family this kernel lacks
        s.close()
    return time.perf_counter() - started


CONFIG = load(os.environ["SOCKDIAG_BENCH_CONFIG"]) if os.environ.get("SOCKDIAG_BENCH_CONFIG") else Config()
CONTEXT = build_plan(CONFIG, DiagStats()).own
_, _HEALTH_RANGES = dump_scope(CONTEXT, ListenerSlots(0))  # the filter a collection's tcp_health dumps carry
FLOOR_REQUESTS["tcp_health"] = [
    health.request(family, _HEALTH_RANGES if len(_HEALTH_RANGES) <= health.MAX_FILTER_RANGES else ())
    for family in (socket.AF_INET, socket.AF_INET6)]


def requests_of_a_collection() -> list:
    """Every dump request one collection with CONFIG makes, in order (recorded by running one)."""
    sent = []

    class Recording:
        def __init__(self, size, timeout):
            self.sock = open_netlink(size, timeout)

        def send(self, data):
            sent.append(bytes(data[16:]))
            return self.sock.send(data)

        def __getattr__(self, name):
            return getattr(self.sock, name)

    plan = build_plan(CONFIG, DiagStats())
    context = Context(lambda: DiagSocket(connect=Recording), options=plan.own.options)
    Scraper(plan._replace(own=context), DiagStats()).collect()
    plan.close()
    return list(dict.fromkeys(sent))


ALL_REQUESTS = requests_of_a_collection()


def collect(name: str) -> float:
    started = time.perf_counter()
    REGISTRY[name].collect(CONTEXT, Samples())
    return time.perf_counter() - started


def analyze(name: str) -> float:
    CONTEXT.kept.clear()
    return collect(name)


def get(url: str, source: str = "") -> float:
    """Seconds to fetch url completely (from the loopback address source, when given)."""
    parts = urllib.parse.urlsplit(url)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    finally:
        conn.close()
    return time.perf_counter() - started


def dumps(url: str) -> float:
    """The dump counter, from a scrape with a collection of its own; returns once the next scrape will have one too
    (a collection serves the scrapes that follow it for as long again as it took)."""
    started = time.monotonic()
    for line in urllib.request.urlopen(url, timeout=120).read().decode().splitlines():
        if line.startswith("sockdiag_netlink_dumps_total "):
            time.sleep(time.monotonic() - started)
            return float(line.split()[1])
    raise RuntimeError("no sockdiag_netlink_dumps_total")


def concurrent(url: str, n: int) -> dict:
    """n scrapes released together; how many collections (sets of kernel dumps) they cost."""
    per_collection = -dumps(url) + dumps(url)
    before = dumps(url)
    barrier = threading.Barrier(n)
    times = []

    def one(source):
        barrier.wait()
        times.append(get(url, source))

    # from ten loopback addresses: the exporter caps the connections of one client (web.max_connections_per_client)
    threads = [threading.Thread(target=one, args=(f"127.0.0.{2 + i % 10}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(max(times))  # out of the burst's collection's reuse window
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
