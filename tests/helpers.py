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

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sockdiag_exporter import overview
from sockdiag_exporter.collectors import REGISTRY
from sockdiag_exporter.collectors.base import Context
from sockdiag_exporter.config import from_dict
from sockdiag_exporter.diag.netlink import DiagStats
from sockdiag_exporter.plan import build_plan
from sockdiag_exporter.scrape import RegistryAdapter, Scraper
from sockdiag_exporter.webapp import TEXT

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


def connect_nonblocking(ns: NetNS, family, target, count: int) -> None:
    """count non-blocking connects to target from inside ns (the sockets kept in ns.keep)."""
    def work():
        for _ in range(count):
            c = socket.socket(family, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(target)
            ns.keep.append(c)

    ns.run(work)


class Peer:
    """A second namespace, linked to the test's by a veth pair (10.9.0.1/fd00::1 there, 10.9.0.2/fd00::2 here),
    whose replies never come back: the test's namespace routes them into a veth whose other end is down. Its
    connects stay SYN_SENT, and the listener's request sockets (SYN_RECV) stay until their SYN-ACKs give up."""

    def __init__(self, ns):
        self.ns = NetNS()
        try:
            commands = [
                f"ip link add sd0 netns {ns.name} type veth peer name sd1 netns {self.ns.name}",
                f"ip -n {ns.name} addr add 10.9.0.1/24 dev sd0",
                f"ip -n {ns.name} addr add fd00::1/64 dev sd0 nodad",
                f"ip -n {self.ns.name} addr add 10.9.0.2/24 dev sd1",
                f"ip -n {self.ns.name} addr add fd00::2/64 dev sd1 nodad",
                f"ip -n {ns.name} link set sd0 up",
                f"ip -n {self.ns.name} link set sd1 up",
                f"ip -n {ns.name} link add void type veth peer name void-peer",  # void-peer stays down
                f"ip -n {ns.name} link set void up",
                f"ip -n {ns.name} route add 10.9.0.2/32 dev void",
                f"ip -n {ns.name} -6 route add fd00::2/128 dev void",
                f"ip -n {ns.name} neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev void",
                f"ip -n {ns.name} neigh add fd00::2 lladdr 02:00:00:00:00:02 dev void",
            ]
            for command in commands:
                subprocess.run(command.split(), check=True)
        except BaseException:
            self.ns.delete()
            raise

    def connect(self, family, target, count):
        """count connects that stay half-open: their SYN_RECV lives in ns (the listener's) until its SYN-ACKs give
        up (net.ipv4.tcp_synack_retries)."""
        connect_nonblocking(self.ns, family, target, count)

    def delete(self):
        self.ns.delete()


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
    return Exposition(_collect(ns, collectors, config, unprivileged)[0])


def scrape_and_overview(ns: NetNS, *collectors: str, config: dict = None):
    """One collection in the namespace, as /metrics serves it (an Exposition) and as the landing page and the
    summary read it (an Overview of the same collection)."""
    text, collection = _collect(ns, collectors, config)
    return Exposition(text), overview.build(collection)


def _collect(ns: NetNS, collectors, config: dict = None, unprivileged: bool = False):
    """(/metrics text, Collection) of one collection in the namespace."""
    def work():
        if unprivileged:
            drop_thread_privileges()
        scraper = make_scraper(config, collectors)
        try:
            return render(scraper), scraper.last
        finally:
            scraper.close()

    return ns.run(work)


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
                                         share=own.share))
    return Scraper(plan, stats)


def render(scraper: Scraper) -> str:
    """One collection in the text format, as /metrics serves it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RegistryAdapter(scraper))
    return TEXT.encode(registry).decode()


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


QUIET = 0.25  # seconds without a change: longer than the longest delayed ACK (200 ms)


def settle(ns: "NetNS", timeout: float = 5.0) -> None:
    """Wait until the namespace is quiescent: every socket, with its queues and memory, unchanged in readings of ss
    over QUIET seconds (handshakes, FINs and datagrams in flight have landed, and data received but not yet
    acknowledged has left its sender's Send-Q: a delayed ACK waits up to TCP_DELACK_MAX, 200 ms; two readings 50 ms
    apart both fell before such an ACK about once in four runs of the summary test on a loaded machine). Netlink
    sockets are left out: ss's own sock_diag socket is among them, its memory different at every reading."""
    def snapshot():
        return subprocess.run(["ss", "-N", ns.name, "-a", "-n", "-m", "-A", "inet,unix,packet", "-H"],
                              check=True, capture_output=True, text=True).stdout

    last = [snapshot(), time.monotonic()]

    def same():
        now = snapshot()
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= QUIET

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
        """A scrape with a collection of its own: a scrape within the last collection's duration after it ended
        would be served that collection again (webapp.App), so this waits that long after the previous one."""
        fresh_after = getattr(self, "_fresh_after", 0.0)
        while time.monotonic() < fresh_after:
            time.sleep(0.005)
        status, _, body = self.get("/metrics")
        assert status == 200
        exposition = Exposition(body.decode())
        duration = exposition.select("sockdiag_collection_duration_seconds")
        self._fresh_after = time.monotonic() + max(duration.values(), default=0.0)
        return exposition

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


def overview_numbers(view: dict) -> dict:
    """The numbers of an overview (Overview.as_dict(), the summary's --json), in the shape metrics_numbers gives."""
    return {
        "sockets": {(r["family"], r["socket_type"], r["protocol"]): r["states"] for r in view["sockets"]},
        "queues": {(r["family"], r["socket_type"], r["protocol"]): [r["receive_queue"], r["send_queue"],
                                                                   r["accept_queue"], r["accept_limit"]]
                   for r in view["sockets"]},
        "largest": {(direction,) + (r["family"], r["socket_type"], r["protocol"]): [r["bytes"], r["data_sockets"]]
                    for direction in ("receive", "send") for r in view[f"{direction}_queues"]},
        "listeners": {(r["netns"], r["family"], r["socket_type"], r["protocol"], r["address"]):
                      [r["length"], r["limit"], r["sockets"], r["drops"], r["half_open"]] for r in view["listeners"]},
        "udp": {(r["family"], r["protocol"]): [r["receive_buffer_errors"], r["receive_errors"],
                                               r["dropped_by_live_sockets"]] for r in view["udp"]},
        "receivers": {(r["netns"], r["family"], r["socket_type"], r["protocol"], r["address"]):
                      [r["queue"], r["buffer"], r["drops"], r["sockets"]] for r in view["receivers"]},
        "ports": {r["netns"]: {"range": r["range_size"], "usage": r["usage"], "timewait": r["timewait"],
                               "limit": r["timewait_limit"], "destinations": sorted(map(tuple, r["destinations"]))}
                  for r in view["ports"]},
        "tcp": [view["listen_overflows"], view["listen_drops"]],
        "collectors": {r["name"]: r["ok"] for r in view["collectors"]},
        "missing": sorted(view["missing_handlers"]),
        "total": view["total_sockets"],
    }


def metrics_numbers(exposition: Exposition, netns: str = None) -> dict:
    """The same numbers summed from a /metrics exposition (of one namespace's series when netns is given)."""
    def select(name):
        for key, value in exposition.select(name).items():
            labels = dict(key)
            if netns is None or labels.get("netns") == netns:
                yield labels, value

    def kind(labels):
        return labels["family"], labels["socket_type"], labels["protocol"]

    sockets, queues, largest, listeners, udp = {}, {}, {}, {}, {}
    for labels, value in select("sockdiag_sockets"):
        if value:
            states = sockets.setdefault(kind(labels), {})
            states[labels["state"]] = states.get(labels["state"], 0) + int(value)
    for i, name in enumerate(("sockdiag_receive_queue_bytes", "sockdiag_send_queue_bytes",
                              "sockdiag_accept_queue_length", "sockdiag_accept_queue_limit")):
        for labels, value in select(name):
            if kind(labels) in sockets:
                queues.setdefault(kind(labels), [0, 0, 0, 0])[i] += int(value)
    for direction in ("receive", "send"):
        for labels, value in select(f"sockdiag_{direction}_queue_bytes"):
            row = largest.setdefault((direction,) + kind(labels), [0, None])
            row[0] += int(value)
        for labels, value in select(f"sockdiag_socket_{direction}_queue_bytes_gcount"):
            row = largest.get((direction,) + kind(labels))
            if row is not None:
                row[1] = (row[1] or 0) + int(value)
    largest = {key: row for key, row in largest.items() if row[0]}
    for i, name in enumerate(("sockdiag_listener_accept_queue_length", "sockdiag_listener_accept_queue_limit",
                              "sockdiag_listener_sockets", "sockdiag_listener_drops_total",
                              "sockdiag_listener_half_open_connections")):
        for labels, value in select(name):
            key = (labels.get("netns", "") if netns is None else netns,) + kind(labels) + (labels["address"],)
            listeners.setdefault(key, [0, 0, 0, 0, 0])[i] += int(value)
    def where(labels):
        return labels.get("netns", "") if netns is None else netns

    receivers, ports = {}, {}
    for i, name in enumerate(("sockdiag_udp_receiver_queue_bytes", "sockdiag_udp_receiver_buffer_bytes",
                              "sockdiag_udp_receiver_drops_total", "sockdiag_udp_receiver_sockets")):
        for labels, value in select(name):
            receivers.setdefault((where(labels),) + kind(labels) + (labels["address"],), [0, 0, 0, 0])[i] += int(value)

    def port_row(labels):
        return ports.setdefault(where(labels), {"range": None, "usage": {}, "timewait": 0, "limit": None,
                                                "destinations": []})

    for labels, value in select("sockdiag_ephemeral_port_range_size"):
        port_row(labels)["range"] = int(value)
    for labels, value in select("sockdiag_ephemeral_port_usage_ratio"):
        port_row(labels)["usage"][labels["family"]] = value
    for labels, value in select("sockdiag_ephemeral_port_destination_usage_ratio"):
        port_row(labels)["destinations"].append((labels["family"], labels["destination"], value))
    for labels, value in select("sockdiag_tcp_timewait_minisockets"):
        port_row(labels)["timewait"] += int(value)
    for labels, value in select("sockdiag_tcp_max_timewait_buckets"):
        port_row(labels)["limit"] = int(value)
    for row in ports.values():
        row["destinations"].sort()
    for i, name in enumerate(("sockdiag_udp_receive_buffer_errors_total", "sockdiag_udp_receive_errors_total")):
        for labels, value in select(name):
            row = udp.setdefault((labels["family"], labels["protocol"]), [None, None, None])
            row[i] = (row[i] or 0) + int(value)
    for labels, value in select("sockdiag_dropped_packets"):
        if labels["protocol"] in ("udp", "udplite"):
            row = udp.setdefault((labels["family"], labels["protocol"]), [None, None, None])
            row[2] = (row[2] or 0) + int(value)
    tcp = [sum(int(v) for _, v in select(name)) if list(select(name)) else None
           for name in ("sockdiag_tcp_listen_overflows_total", "sockdiag_tcp_listen_drops_total")]
    handlers = {}
    for labels, value in select("sockdiag_diag_handler_available"):  # a kernel-wide fact: 1 if any namespace says so
        key = (labels["family"], labels["protocol"])
        handlers[key] = max(handlers.get(key, 0), value)
    return {
        "sockets": sockets,
        "queues": queues,
        "largest": largest,
        "listeners": listeners,
        "udp": udp,
        "receivers": receivers,
        "ports": ports,
        "tcp": tcp,
        "collectors": {dict(key)["collector"]: bool(value)
                       for key, value in exposition.select("sockdiag_scrape_collector_success").items()},
        "missing": sorted(f"{family}/{protocol}".rstrip("/") for (family, protocol), up in handlers.items()
                          if not up),
        "total": sum(sum(states.values()) for states in sockets.values()),
    }


SCRIPT_NAME = "<script>alert(1)</script>"  # a unix socket name that must show as text on the page
ONERROR_NAME = "<img src=x onerror=\"document.title='pwned'\">"  # a unix path whose handler must never run
TERMINAL_NAME = "\x1b[31mred\x1b[0m"  # a unix socket name that must not colour a terminal


def populate(ns: NetNS, directory) -> dict:
    """A small host's worth of sockets in ns, each kind worth a line on the landing page: TCP listeners 7/8 and
    4/16 full, a connection with up to 200 KiB unread, UDP drops, unix listeners with hostile names (abstract and a path
    in directory), unix data waiting. Returns the listening addresses as the exporter names them."""
    path = os.path.join(str(directory), ONERROR_NAME)

    def work():
        keep = ns.keep
        for address, family, backlog, waiting in ((("127.0.0.1", 8080), socket.AF_INET, 8, 7),
                                                   (("::1", 5432), socket.AF_INET6, 16, 4)):
            server = socket.socket(family)
            server.bind(address)
            server.listen(backlog)
            keep.append(server)
            keep.extend(socket.create_connection(address) for _ in range(waiting))
        server = socket.socket()
        server.bind(("0.0.0.0", 9000))
        server.listen(128)
        client = socket.create_connection(("127.0.0.1", 9000))
        accepted, _ = server.accept()
        client.setblocking(False)
        client.send(b"q" * 200 * 1024)  # as much as the send buffer takes: nobody reads it
        keep.extend([server, client, accepted])
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum: a few datagrams
        receiver.bind(("127.0.0.1", 5353))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        keep.extend([receiver, sender])
        for _ in range(200):
            sender.sendto(b"d" * 1000, receiver.getsockname())
        for name in ("\0" + SCRIPT_NAME, "\0" + TERMINAL_NAME, path):
            unix = socket.socket(socket.AF_UNIX)
            unix.bind(name)
            unix.listen(4)
            keep.append(unix)
        a, b = socket.socketpair()
        a.send(b"m" * 3000)
        keep.extend([a, b])

    ns.run(work)
    settle(ns)
    return {"full": "127.0.0.1:8080", "inet6": "[::1]:5432", "script": "@" + SCRIPT_NAME, "path": path,
            "terminal": "@" + TERMINAL_NAME, "receiver": "127.0.0.1:5353"}
