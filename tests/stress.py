"""Load, soak and fault runs against the real daemon in a namespace (used by test_stress.py with small numbers).

    sudo .venv/bin/python tests/stress.py [--clients 50] [--duration 60] [--scrapes 10000]

load: N clients scrape in a loop for D seconds: errors, collections (the dump counter proves single-flight),
RSS before and after. soak: S scrapes in a row while a churner opens and closes sockets in the namespace: RSS and
open fds sampled along the way.
"""

import argparse
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import Daemon, Exposition, NetNS  # noqa: E402


def process_usage(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(fields["Threads"])}


def dumps(daemon: Daemon) -> float:
    return daemon.metrics().value("sockdiag_netlink_dumps_total")


def load(ns: NetNS, daemon: Daemon, clients: int, duration: float) -> dict:
    for _ in range(20):  # warm up: imports, first collections, buffers
        daemon.get("/metrics")
    per_collection = -dumps(daemon) + dumps(daemon)
    before_usage, before = process_usage(daemon.proc.pid), dumps(daemon)
    errors, scrapes = [], [0]
    stop = time.monotonic() + duration

    def client(source):
        import http.client

        while time.monotonic() < stop:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", 19965, timeout=30, source_address=(source, 0))
                conn.request("GET", "/metrics")
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status != 200 or b"sockdiag_sockets" not in body:
                    errors.append(response.status)
                scrapes[0] += 1
            except Exception as e:  # every failure counts
                errors.append(repr(e))

    # Spread over 127.0.0.2-11 as scrapers on several hosts: the exporter caps connections per client address.
    threads = [threading.Thread(target=ns.run, args=(client, f"127.0.0.{2 + i % 10}")) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = dumps(daemon)
    collections = (after - before) / per_collection - 1  # the last dumps() call is a collection of its own
    usage = process_usage(daemon.proc.pid)
    return {"clients": clients, "seconds": duration, "scrapes": scrapes[0], "errors": len(errors),
            "error_samples": [str(e) for e in errors[:5]], "collections": collections,
            "rss_before_kb": before_usage["rss_kb"], "rss_after_kb": usage["rss_kb"],
            "fds_before": before_usage["fds"], "fds_after": usage["fds"]}


def churn(ns: NetNS, stop: threading.Event) -> None:
    """Open and close TCP connections, UDP and unix sockets in the namespace until stop is set."""

    def work():
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        held = []
        i = 0
        while not stop.is_set():
            c = socket.create_connection(server.getsockname())
            s, _ = server.accept()
            held.append((c, s))
            held.append(socket.socketpair())
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("127.0.0.1", 0))
            held.append((u,))
            while len(held) > 600:
                for sock in held.pop(i % len(held)):
                    sock.close()
            i += 7
            time.sleep(0.002)
        for group in held:
            for sock in group:
                sock.close()
        server.close()

    ns.run(work)


def soak(ns: NetNS, daemon: Daemon, scrapes: int) -> dict:
    stop = threading.Event()
    churner = threading.Thread(target=churn, args=(ns, stop))
    churner.start()
    samples = []
    try:
        for i in range(scrapes):
            status, _, body = daemon.get("/metrics")
            if status != 200:
                raise AssertionError(f"scrape {i}: HTTP {status}")
            if i % max(scrapes // 20, 1) == 0 or i == scrapes - 1:
                sockets = sum(Exposition(body.decode()).select("sockdiag_sockets").values())
                samples.append(dict(process_usage(daemon.proc.pid), scrape=i, sockets=sockets))
    finally:
        stop.set()
        churner.join()
    settled = samples[len(samples) // 4:]  # after warm-up
    return {"scrapes": scrapes, "samples": samples,
            "rss_kb_min_max_after_warmup": [min(s["rss_kb"] for s in settled), max(s["rss_kb"] for s in settled)],
            "fds_min_max_after_warmup": [min(s["fds"] for s in settled), max(s["fds"] for s in settled)],
            "sockets_min_max": [min(s["sockets"] for s in samples), max(s["sockets"] for s in samples)]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--scrapes", type=int, default=10000)
    args = ap.parse_args()
    ns = NetNS()
    try:
        daemon = Daemon(ns, "--log.level=warn")
        try:
            print(json.dumps({"load": load(ns, daemon, args.clients, args.duration)}, indent=1), flush=True)
            result = soak(ns, daemon, args.scrapes)
            result["samples"] = [result["samples"][0], result["samples"][-1]]
            print(json.dumps({"soak": result}, indent=1), flush=True)
        finally:
            daemon.stop()
    finally:
        ns.delete()


if __name__ == "__main__":
    main()
