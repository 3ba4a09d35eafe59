"""A realistic socket population in a fresh network namespace, built by worker processes and removed completely.

For a size N: about 70% established TCP over IPv4 and IPv6, 12% in TIME_WAIT (kept steady by a churning
worker), 3% CLOSE_WAIT/FIN_WAIT2 pairs, 5% UDP, 8% unix stream pairs, and 20 listeners with queued connections.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PER_WORKER = 9000  # pairs per process: 18,000 fds under the 20,000 limit
SYSCTLS = {
    "net.ipv4.ip_local_port_range": "30000 65535",  # above the listeners (20000+) and the exporters (19xxx)
    "net.ipv4.tcp_max_tw_buckets": "4000000",
    "net.core.somaxconn": "65535",
}


def plan(size: int, destinations: int = 0) -> list:
    """(kind, count, port, extra...) worker jobs for a population of about size sockets; with destinations, the
    IPv4 tcp workers send half of their connections to that many other destinations each."""
    jobs = []
    port = 20000

    def split(kind, total, per=PER_WORKER, extra=""):
        nonlocal port
        while total > 0:
            count = min(per, total)
            family = "6" if len(jobs) % 2 else "4"
            jobs.append((kind, count, port) + ((family, str(destinations)) if extra is None else
                                               (extra if extra else family,)))
            total -= count
            port += 1

    split("churn", int(size * 0.12), per=200000)
    pairs = int(size * 0.70) // 2
    split("tcp", pairs, per=min(PER_WORKER, -(-pairs // 2)), extra=None)  # two workers at least: both families
    split("close_wait", int(size * 0.03) // 2)
    split("udp", int(size * 0.05), per=18000)
    split("unix", int(size * 0.08) // 2)
    jobs.append(("listeners", 20, port, ""))
    return jobs


class Population:
    def __init__(self, size: int, name: str, destinations: int = 0):
        self.size = size
        self.ns = name
        self.destinations = destinations
        self.workers = []

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        try:
            subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
            for key, value in SYSCTLS.items():
                subprocess.run(["ip", "netns", "exec", self.ns, "sysctl", "-q", "-w", f"{key}={value}"], check=True)
            for kind, count, port, *extra in plan(self.size, self.destinations):
                self.workers.append(subprocess.Popen(
                    ["ip", "netns", "exec", self.ns, sys.executable, "-m", "bench.worker", kind, str(count), str(port),
                     *extra], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            for w in self.workers:
                if w.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a population worker failed: {w.args}")
        except BaseException:
            for w in self.workers:  # still building, not reading stdin: do not wait for them
                w.kill()
            self.__exit__(None, None, None)
            raise
        return self

    def summary(self) -> str:
        out = subprocess.run(["ss", "-N", self.ns, "-s"], capture_output=True, text=True).stdout
        return " ".join(out.split())

    def __exit__(self, *exc):
        for w in self.workers:
            try:
                w.stdin.close()
            except OSError:
                pass
        for w in self.workers:
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        self.workers.clear()
        subprocess.run(["ip", "netns", "del", self.ns], check=False)
