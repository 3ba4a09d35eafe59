"""Test helpers: fresh network namespaces, threads inside them, the exporter's output, and ss as an oracle."""

import contextlib
import ctypes
import http.client
import os
import socket
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sockdiag_exporter.collectors import REGISTRY
from sockdiag_exporter.collectors.base import Context
from sockdiag_exporter.config import from_dict
from sockdiag_exporter.diag.netlink import DiagStats
from sockdiag_exporter.plan import build_plan
from sockdiag_exporter.scrape import RegistryAdapter, Scraper

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetNS:
    """A named network namespace (ip netns) with lo up; run() executes a function in a thread inside it."""

    def __init__(self):
        self.name = f"sdtest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self.keep = []  # sockets and other objects that must live as long as the namespace

    def run(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) in a new thread that entered this namespace (setns is per thread)."""
        result = {}

        def target():
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            try:
                result["value"] = fn(*args, **kwargs)
            except BaseException as e:
                result["error"] = e

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def sh(self, command: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.name, "sh", "-c", command], check=True,
                              capture_output=True, text=True).stdout

    def ss(self, *args) -> list:
        return ss_rows(self.name, *args)

    def delete(self):
        for obj in self.keep:
            close = getattr(obj, "close", None)
            if close:
                close()
        self.keep.clear()
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def ss_rows(namespace: str, *args) -> list:
    """Rows of `ss -N <namespace> -H -n <args>`: (netid or None, state, recv_q, send_q, rest of the line)."""
    out = subprocess.run(["ss", "-N", namespace, "-H", "-n", *args], check=True, capture_output=True,
                         text=True).stdout
    rows = []
    for line in out.splitlines():
        tokens = line.split()
        netid = tokens.pop(0) if tokens[0] in SS_NETIDS else None
        rows.append((netid, tokens[0], int(tokens[1]), int(tokens[2]), tokens[3:]))
    return rows


SS_NETIDS = {"tcp", "udp", "raw", "mptcp", "u_str", "u_dgr", "u_seq", "nl", "p_raw", "p_dgr", "sctp", "dccp",
             "v_str", "v_dgr", "tipc", "xdp"}

SS_STATES = {
    "ESTAB": "established", "SYN-SENT": "syn_sent", "SYN-RECV": "syn_recv", "FIN-WAIT-1": "fin_wait1",
    "FIN-WAIT-2": "fin_wait2", "TIME-WAIT": "time_wait", "CLOSE-WAIT": "close_wait", "LAST-ACK": "last_ack",
    "LISTEN": "listen", "CLOSING": "closing",
}


def ss_state(name: str, unconnected: str) -> str:
    """ss's state column in our words; UNCONN is 'close' for TCP-like protocols, 'unconnected' elsewhere."""
    return unconnected if name == "UNCONN" else SS_STATES[name]


class Exposition:
    """Samples of one scrape: (name, sorted label items) -> value."""

    def __init__(self, text: str):
        self.text = text
        self.samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def select(self, name: str, **labels) -> dict:
        """Samples of a metric whose labels include the given ones: label dict items -> value."""
        want = set(labels.items())
        return {key: v for (n, key), v in self.samples.items() if n == name and want <= set(key)}

    def value(self, name: str, **labels) -> float:
        found = self.select(name, **labels)
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
        return next(iter(found.values()))

    def by_state(self, **labels) -> dict:
        """state -> [count, receive/accept-queue, send queue/accept-queue limit] for sockets matching labels."""
        result = defaultdict(lambda: [0, 0, 0])
        for key, v in self.select("sockdiag_sockets", **labels).items():
            result[dict(key)["state"]][0] += v
        for metric, i in (("sockdiag_receive_queue_bytes", 1), ("sockdiag_send_queue_bytes", 2)):
            for key, v in self.select(metric, **labels).items():
                result[dict(key)["state"]][i] += v
        for metric, i in (("sockdiag_accept_queue_length", 1), ("sockdiag_accept_queue_limit", 2)):
            for v in self.select(metric, **labels).values():
                result["listen"][i] += v
        return {state: [int(x) for x in row] for state, row in result.items()}


SYS_SETRESUID, SYS_SETRESGID = 117, 119  # x86_64
NOBODY = 65534


def drop_thread_privileges():
    """Become nobody in the calling thread only (raw syscalls: glibc's setuid would change every thread)."""
    for number in (SYS_SETRESGID, SYS_SETRESUID):
        if _libc.syscall(number, NOBODY, NOBODY, NOBODY) != 0:
            raise OSError(ctypes.get_errno(), "setres[ug]id")


def scrape(ns: NetNS, *collectors: str, unprivileged: bool = False, config: dict = None) -> Exposition:
    """One collection in the namespace with the given config (YAML as a dict; defaults when None), rendered and
    parsed exactly as /metrics serves it."""

    def work():
        if unprivileged:
            drop_thread_privileges()
        scraper = make_scraper(config, collectors)
        try:
            return render(scraper)
        finally:
            scraper.close()

    return Exposition(ns.run(work))


def make_scraper(config: dict = None, collectors=(), make_diag=None, proc=None) -> Scraper:
    """A Scraper for the config (YAML as a dict), with only the given collectors (names or Collector objects) when
    some are given, and make_diag (makes a DiagSocket) and proc (a ProcNet) instead of its own when given."""
    stats = DiagStats()
    config = dict(config or {})
    names = {c for c in collectors if isinstance(c, str)}
    if names:  # only those enabled, so that no other collector starts counting in the background (flows)
        config["collectors"] = {name: name in names for name in REGISTRY}
    plan = build_plan(from_dict(config), stats)
    if collectors:
        plan = plan._replace(collectors=tuple(REGISTRY[c] if isinstance(c, str) else c for c in collectors))
    if make_diag is not None or proc is not None:
        own = plan.own

        def counted():
            diag = make_diag()
            diag.stats = stats
            return diag

        plan = plan._replace(own=Context(counted if make_diag else own.make_diag, options=own.options, proc=proc,
                                         parallel=own.parallel_dumps))
    return Scraper(plan, stats)


def render(scraper: Scraper) -> str:
    """One collection in the text format, as /metrics serves it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RegistryAdapter(scraper))
    return generate_latest(registry).decode()


def nonzero(table: dict) -> dict:
    return {k: v for k, v in table.items() if any(v)}


def ss_by_state(rows, unconnected: str) -> dict:
    result = defaultdict(lambda: [0, 0, 0])
    for _, state, rq, wq, _ in rows:
        row = result[ss_state(state, unconnected)]
        row[0] += 1
        row[1] += rq
        row[2] += wq
    return dict(result)


def wait_until(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextlib.contextmanager
def cgroup2_hierarchy(base, paths):
    """A cgroup2 hierarchy mounted at base/cgroup2 (this host's own may be hybrid or v1) with the cgroups at paths
    ("/kubepods.slice/..."); removed again afterwards. Yields the mount point (a pathlib.Path)."""
    mount = base / "cgroup2"
    mount.mkdir()
    subprocess.run(["mount", "-t", "cgroup2", "none", str(mount)], check=True)
    made = []
    try:
        for path in paths:
            target = mount / path.lstrip("/")
            target.mkdir(parents=True)
            made.append(target)
        yield mount
    finally:
        for target in made:
            while target != mount:
                try:
                    target.rmdir()
                except OSError:
                    break
                target = target.parent
        subprocess.run(["umount", str(mount)], check=False)


def settle(ns: "NetNS", timeout: float = 5.0) -> None:
    """Wait until the namespace is quiescent: every socket, with its queues and memory, the same in two readings of
    ss in a row (handshakes, FINs and datagrams in flight have landed). Netlink sockets are left out: ss's own
    sock_diag socket is among them, its memory different at every reading."""
    def snapshot():
        return subprocess.run(["ss", "-N", ns.name, "-a", "-n", "-m", "-A", "inet,unix,packet", "-H"],
                              check=True, capture_output=True, text=True).stdout

    last = [snapshot()]

    def same():
        now = snapshot()
        unchanged, last[0] = now == last[0], now
        return unchanged

    if not wait_until(same, timeout, interval=0.05):
        raise AssertionError(f"namespace {ns.name} did not settle within {timeout:g} s")


def listen(ns, host="127.0.0.1", port=8000, family=socket.AF_INET):
    """A TCP listener in the namespace (SO_REUSEADDR, backlog 128), kept with it."""
    server = ns.run(socket.socket, family)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(128)
    ns.keep.append(server)
    return server


def fill_send_queue(sock: socket.socket, chunk: bytes = b"z" * 65536) -> int:
    """Write to a non-blocking socket until the kernel refuses more; bytes written."""
    sock.setblocking(False)
    total = 0
    while True:
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total


PORT = 19965


class Daemon:
    """The exporter as users run it: a subprocess in the namespace, spoken to over HTTP (or HTTPS) from inside."""

    def __init__(self, ns, *args, tls=None, wrap=()):
        """wrap: a command that runs the exporter's command line given to it (e.g. in a private mount namespace)."""
        self.ns = ns
        self.tls = tls  # an ssl.SSLContext for HTTPS
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, *wrap, sys.executable, "-m", "sockdiag_exporter",
             f"--web.listen-address=127.0.0.1:{PORT}", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.lines = []  # the log so far, read as it comes so that tests can wait for a line
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                self.get("/")
                return
            except (OSError, http.client.HTTPException):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    self._reader.join(5)
                    raise AssertionError(f"daemon did not start: {self.log()}") from None
                time.sleep(0.05)

    def _read_log(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until text has appeared in count log lines."""
        if not wait_until(lambda: sum(text in line for line in self.lines) >= count, timeout):
            raise AssertionError(f"{text!r} not logged {count} times within {timeout:g} s:\n{self.log()}")

    def request(self, method, path, headers=None, tls=None):
        def work():
            context = tls or self.tls
            conn = (http.client.HTTPSConnection("127.0.0.1", PORT, timeout=10, context=context) if context
                    else http.client.HTTPConnection("127.0.0.1", PORT, timeout=10))
            try:
                conn.request(method, path, headers=headers or {})
                resp = conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read()
            finally:
                conn.close()

        return self.ns.run(work)

    def get(self, path, headers=None):
        return self.request("GET", path, headers)

    def metrics(self) -> Exposition:
        status, _, body = self.get("/metrics")
        assert status == 200
        return Exposition(body.decode())

    def stop(self):
        """Stop it (SIGTERM, or kill after 10 s); (stdout, stderr) as communicate() gave them (stdout: None)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        return None, self.log() + "\n" if self.lines else ""
