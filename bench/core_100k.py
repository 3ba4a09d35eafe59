"""Scrape cost at ~100k TCP sockets, beside ss and the kernel floor, in one run.

    sudo .venv/bin/python bench/core_100k.py [--sockets 100000] [--time-wait 0] [--repeat 7] [--config FILE]

Builds established TCP connections (IPv4 and IPv6, over several worker processes: the fd limit is per process)
and optionally TIME_WAIT sockets in a fresh network namespace, then measures, alternating A B C …:
the kernel floor (receive the tcp dumps, no decoding), the tcp collector in-process, `ss -tan`, and a full
/metrics scrape over HTTP of the daemon with its default collectors, whose peak RSS is reported at the end.
--config passes a configuration file to the daemon and to the in-process collector (e.g. memory for tcp).
Removes the namespace (and with it every socket) on exit, also on Ctrl-C.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "exporter"))

WORKER = r"""
import resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
count, port, v6, time_wait = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "6", sys.argv[4] == "tw"
family, host = (socket.AF_INET6, "::1") if v6 else (socket.AF_INET, "127.0.0.1")
listener = socket.socket(family)
listener.bind((host, port))
listener.listen(4096)
keep = []
for _ in range(count):
    client = socket.create_connection((host, port))
    server, _ = listener.accept()
    if time_wait:
        client.close()
        server.close()
    else:
        keep += [client, server]
print("ready", flush=True)
sys.stdin.read()
"""

PER_WORKER = 9000  # connections: 18,000 fds, under the 20,000 limit


def median_spread(values):
    return statistics.median(values), min(values), max(values)


def in_netns(ns, *argv, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *argv], **kw)


FLOOR = r"""
import socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
from sockdiag_exporter.diag import requests
from sockdiag_exporter.collectors import REGISTRY
from sockdiag_exporter.collectors.base import Samples
from sockdiag_exporter.config import Config, load
from sockdiag_exporter.service import build_context

def floor():
    for family in (socket.AF_INET, socket.AF_INET6):
        req = requests.inet(family, socket.IPPROTO_TCP)
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
        s.setsockopt(socket.SOL_SOCKET, 33, 1 << 20)
        s.bind((0, 0))
        s.send(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req)
        buf = bytearray(1 << 20)
        while True:
            n = s.recv_into(buf)
            if n >= 20 and struct.unpack_from("=IH", buf, n - 20) == (20, 3):
                break
        s.close()

ctx = build_context(load(sys.argv[3]) if sys.argv[3] else Config())
tcp = REGISTRY["tcp"]
which = sys.argv[2]
t = time.perf_counter()
floor() if which == "floor" else tcp.collect(ctx, Samples())
print(time.perf_counter() - t)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", type=int, default=100000, help="established TCP sockets (two per connection)")
    ap.add_argument("--time-wait", type=int, default=0, help="TIME_WAIT sockets to add")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--port", type=int, default=19966)
    ap.add_argument("--config", default="", help="configuration file for the daemon and the collector")
    args = ap.parse_args()
    ns = f"sdbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    workers = []
    daemon = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        jobs, left, port = [], args.sockets // 2, 20000
        while left > 0:
            count = min(PER_WORKER, left)
            jobs.append((count, port, "6" if len(jobs) % 2 else "4", "est"))
            left -= count
            port += 1
        left = args.time_wait
        while left > 0:
            count = min(20000, left)
            jobs.append((count, port, "4", "tw"))
            left -= count
            port += 1
        for count, port, v, kind in jobs:
            workers.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", WORKER, str(count), str(port), v, kind],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for w in workers:
            assert w.stdout.readline().strip() == "ready"
        summary = subprocess.run(["ss", "-N", ns, "-s"], capture_output=True, text=True).stdout.splitlines()[1]
        print(f"population: {summary.strip()}")

        daemon = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "sockdiag_exporter",
                                   f"--web.listen-address=127.0.0.1:{args.port}", "--log.level=warn"]
                                  + ([f"--config.file={os.path.abspath(args.config)}"] if args.config else []),
                                  env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "exporter")))

        def scrape():
            code = (f"import urllib.request,time;t=time.perf_counter();"
                    f"urllib.request.urlopen('http://127.0.0.1:{args.port}/metrics').read();"
                    f"print(time.perf_counter()-t)")
            return float(in_netns(ns, sys.executable, "-c", code, capture_output=True, text=True,
                                  check=True).stdout)

        for _ in range(50):
            try:
                scrape()
                break
            except subprocess.CalledProcessError:
                time.sleep(0.2)

        def timed(argv):
            t = time.perf_counter()
            in_netns(ns, *argv, stdout=subprocess.DEVNULL, check=True)
            return time.perf_counter() - t

        def in_process(which):
            config = os.path.abspath(args.config) if args.config else ""
            return float(in_netns(ns, sys.executable, "-c", FLOOR, os.path.join(ROOT, "exporter"), which, config,
                                  capture_output=True, text=True, check=True).stdout)

        results = {"kernel floor (tcp dumps, no decoding)": [], "tcp collector": [], "ss -tan": [],
                   "full /metrics scrape over HTTP": []}
        for _ in range(args.repeat):
            results["kernel floor (tcp dumps, no decoding)"].append(in_process("floor"))
            results["tcp collector"].append(in_process("tcp"))
            results["ss -tan"].append(timed(["ss", "-tan"]))
            results["full /metrics scrape over HTTP"].append(scrape())
        floor = statistics.median(results["kernel floor (tcp dumps, no decoding)"])
        for name, values in results.items():
            med, lo, hi = median_spread(values)
            print(f"{name:40s} median {med:.3f} s  [{lo:.3f}-{hi:.3f}]  {med / floor:.2f}x floor")
        # `ip netns exec` execs the command: the daemon keeps this pid
        fields = dict(line.split(":", 1) for line in open(f"/proc/{daemon.pid}/status"))
        print(f"daemon RSS {fields['VmRSS'].strip()}, peak {fields['VmHWM'].strip()} after {args.repeat + 1} scrapes")
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait()
        for w in workers:
            w.stdin.close()
            w.wait()
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    main()
