"""What the landing page and the terminal summary show, read from one Collection: the exporter's health, an
`ss -s`-like table of sockets, listeners by fill ratio with their drops and SYN backlogs, the largest queues, UDP
drops and receivers, ephemeral ports and TIME_WAIT, and the network namespaces.

Plain data only (the page renders it as HTML, the summary as text or JSON); nothing here collects. Every number is a
sum of the samples /metrics serves from the same collection, so the two always agree.
"""

from typing import Dict, List, NamedTuple, Optional, Tuple

from . import __version__
from . import metrics as m
from .scrape import IN_NETNS, Collection, fold

PROJECT_URL = "https://github.com/sockdiag-exporter/sockdiag-exporter"  # README states it; the packages' Homepage
README_METRICS_URL = f"{PROJECT_URL}#metrics"
RUNBOOKS_URL = f"{PROJECT_URL}/blob/main/docs/runbooks.md"
DOC_DIR = "/usr/share/doc/sockdiag-exporter"  # where the packages install README.md and runbooks.md


class CollectorHealth(NamedTuple):
    name: str
    ok: bool
    seconds: float  # summed over namespaces
    errors: Tuple[str, ...]  # "<error>" or "<error> (in netns <label>)"


class SocketRow(NamedTuple):
    """One family/socket type/protocol: its sockets by state, data-queue sums and, for listeners, accept queues."""
    family: str
    socket_type: str
    protocol: str
    sockets: int
    states: Dict[str, int]  # states with sockets, most first
    receive_queue: int  # bytes, data sockets (listeners excluded)
    send_queue: int
    accept_queue: int  # connections waiting in listeners
    accept_limit: int


class ListenerRow(NamedTuple):
    netns: str  # "" without namespaces
    family: str
    socket_type: str
    protocol: str
    address: str  # from the kernel: a unix path or abstract name is any string a local user chose
    length: int
    limit: int
    sockets: int
    drops: int  # SYNs and connections its sockets dropped since they were opened (SK_MEMINFO_DROPS)
    half_open: int  # connections in SYN_RECV towards it: its SYN backlog (TCP)

    @property
    def fill(self) -> float:
        """length / limit; a queue with a limit of 0 is full as soon as one connection waits."""
        if self.limit:
            return self.length / self.limit
        return 1.0 if self.length else 0.0


class ReceiverRow(NamedTuple):
    """A UDP receiver: the sockets bound to one local address and port ("other": the ones folded)."""
    netns: str
    family: str
    socket_type: str
    protocol: str
    address: str
    queue: int  # bytes waiting to be read
    buffer: int  # receive buffer bytes
    drops: int  # datagrams its sockets dropped since they were opened
    sockets: int

    @property
    def fill(self) -> float:
        return self.queue / self.buffer if self.buffer else 0.0


class PortsRow(NamedTuple):
    """One namespace's ephemeral ports and TIME_WAIT table."""
    netns: str
    range_size: Optional[int]  # ports connect() can pick
    usage: Dict[str, float]  # family -> the busiest destination's share of the range
    destinations: Tuple[Tuple[str, str, float], ...]  # (family, destination, share), busiest first (if configured)
    timewait: int  # TIME_WAIT minisockets
    timewait_limit: Optional[int]  # net.ipv4.tcp_max_tw_buckets

    @property
    def busiest(self) -> float:
        """The busiest destination's share of the range, over the families."""
        return max(self.usage.values(), default=0.0)


class QueueRow(NamedTuple):
    """The queued bytes of one family/socket type/protocol in one direction, from the gauge histograms when on."""
    family: str
    socket_type: str
    protocol: str
    bytes: int
    data_sockets: Optional[int]  # sockets in the histogram (None: histograms off or left out by the budget)
    holding: Optional[int]  # of those, sockets with a non-empty queue (needs a bucket bound of 0)
    largest: Optional[Tuple[Optional[int], Optional[int]]]  # (above, at most) bytes of the fullest socket's queue


class UdpRow(NamedTuple):
    family: str
    protocol: str
    receive_buffer_errors: Optional[int]  # datagrams dropped for a full buffer, since boot (netstat collector)
    receive_errors: Optional[int]  # datagrams not delivered, since boot
    dropped_by_live_sockets: Optional[int]  # Σ drops of the live sockets (memory.collectors), else None


class NamespaceRow(NamedTuple):
    netns: str
    container: str  # what owns a process in it (pod, container, unit), "" if unknown
    sockets: int
    up: bool
    failures: Tuple[str, ...]  # "<collector>: <error>"; "not entered" when it could not be entered


class Overview(NamedTuple):
    version: str
    started: Optional[float]  # wall time the exporter started (None: the summary command, not a daemon)
    finished: float  # wall time the collection ended
    duration: float
    config_file: str
    features: Tuple[Tuple[str, str], ...]  # (feature, "on" / "off" / why it is off)
    collectors: Tuple[CollectorHealth, ...]
    failures: Tuple[str, ...]  # every failure, one line each, collectors and namespaces alike
    missing_handlers: Tuple[str, ...]  # "family/protocol" this kernel has no sock_diag handler for
    netns: Optional[str]  # the tables are of this namespace only; None: every collected one (or no namespaces)
    sockets: Tuple[SocketRow, ...]
    listeners: Tuple[ListenerRow, ...]  # fullest first
    listen_overflows: Optional[int]  # TCP accept-queue overflows since boot (TcpExt), None without netstat
    listen_drops: Optional[int]
    receive_queues: Tuple[QueueRow, ...]  # largest first, non-empty only
    send_queues: Tuple[QueueRow, ...]
    udp: Tuple[UdpRow, ...]
    receivers: Tuple[ReceiverRow, ...]  # most drops first, then the fullest buffer
    ports: Tuple[PortsRow, ...]  # namespaces with a port range or TIME_WAIT minisockets
    namespaces: Optional[Tuple[NamespaceRow, ...]]  # largest first; None when namespaces are off

    @property
    def total_sockets(self) -> int:
        return sum(row.sockets for row in self.sockets)

    @property
    def failing(self) -> int:
        return sum(not c.ok for c in self.collectors)

    def as_dict(self) -> dict:
        """JSON-ready: every row as an object, byte values in bytes."""
        def rows(items):
            return [dict(row._asdict(), **({"fill": row.fill} if isinstance(row, (ListenerRow, ReceiverRow)) else {}))
                    for row in items]

        out = {name: getattr(self, name) for name in ("version", "started", "finished", "duration", "config_file",
                                                      "failures", "missing_handlers", "netns", "listen_overflows",
                                                      "listen_drops")}
        out["total_sockets"] = self.total_sockets
        out["features"] = dict(self.features)
        for name in ("collectors", "sockets", "listeners", "receive_queues", "send_queues", "udp", "receivers",
                     "ports"):
            out[name] = rows(getattr(self, name))
        out["namespaces"] = None if self.namespaces is None else rows(self.namespaces)
        return out


def netns_labels(collection: Collection) -> List[str]:
    """The namespaces a collection reported, in its order (the exporter's own first)."""
    return [labels[0] for labels, _ in collection.samples.get(m.NETNS_UP, ())]


def build(collection: Collection, started: Optional[float] = None, netns: Optional[str] = None) -> Overview:
    """The overview of a collection; with netns, its tables hold only that namespace's sockets."""
    samples = _Samples(collection, netns)
    plan = collection.plan
    collectors = _collectors(collection)
    return Overview(
        version=__version__,
        started=started,
        finished=collection.finished,
        duration=collection.duration,
        config_file=plan.config_file,
        features=_features(collection),
        collectors=collectors,
        failures=_failures(collection, collectors),
        missing_handlers=tuple(sorted({f"{family}/{protocol}".rstrip("/") for (family, protocol), v  # kernel-wide
                                       in _Samples(collection, None).rows(m.HANDLER_AVAILABLE) if not v})),
        netns=netns,
        sockets=_sockets(samples),
        listeners=tuple(sorted(
            (ListenerRow(where, *labels, *values) for (where, labels), values
             in samples.joined(m.LISTENER_QUEUE_LENGTH, m.LISTENER_QUEUE_LIMIT, m.LISTENER_SOCKETS, m.LISTENER_DROPS,
                               m.LISTENER_HALF_OPEN).items()),
            key=lambda row: (-row.fill, -row.drops, -row.length, row.netns, row.address))),
        listen_overflows=samples.total(m.TCP_LISTEN_OVERFLOWS),
        listen_drops=samples.total(m.TCP_LISTEN_DROPS),
        receive_queues=_queues(samples, m.RECEIVE_QUEUE, m.RECEIVE_QUEUE_HISTOGRAM),
        send_queues=_queues(samples, m.SEND_QUEUE, m.SEND_QUEUE_HISTOGRAM),
        udp=_udp(samples),
        receivers=tuple(sorted(
            (ReceiverRow(where, *labels, *values) for (where, labels), values
             in samples.joined(m.RECEIVER_QUEUE, m.RECEIVER_BUFFER, m.RECEIVER_DROPS, m.RECEIVER_SOCKETS).items()),
            key=lambda row: (-row.drops, -row.fill, row.netns, row.address))),
        ports=_ports(samples),
        namespaces=_namespaces(collection) if collection.namespaced else None,
    )


class _Samples:
    """A collection's samples with the netns label taken off (kept apart for listeners), optionally of one
    namespace only."""

    def __init__(self, collection: Collection, netns: Optional[str]):
        self._collection = collection
        self._netns = netns

    def labelled(self, metric: m.Metric):
        """(netns label or "", labels, value) of every sample in scope."""
        namespaced = self._collection.namespaced and metric not in m.EXPORTER
        for labels, value in self._collection.samples.get(metric, ()):
            where, labels = (labels[0], labels[1:]) if namespaced else ("", labels)
            if self._netns is None or where == self._netns:
                yield where, labels, value

    def rows(self, metric: m.Metric) -> list:
        """(labels, value), summed over the namespaces in scope as netns="other" sums them, in the order first
        seen."""
        return fold(metric, [(labels, value) for _, labels, value in self.labelled(metric)])

    def total(self, metric: m.Metric) -> Optional[int]:
        values = [value for _, _, value in self.labelled(metric)]
        return int(sum(values)) if values else None

    def joined(self, *metrics: m.Metric) -> Dict[Tuple[str, tuple], list]:
        """(netns, labels) -> [value of each metric], 0 where one has no sample."""
        joined: Dict[Tuple[str, tuple], list] = {}
        for i, metric in enumerate(metrics):
            for where, labels, value in self.labelled(metric):
                joined.setdefault((where, labels), [0] * len(metrics))[i] += int(value)
        return joined


def _collectors(collection: Collection) -> Tuple[CollectorHealth, ...]:
    success = dict(collection.samples.get(m.COLLECTOR_SUCCESS, ()))
    seconds = dict(collection.samples.get(m.COLLECTOR_DURATION, ()))
    errors: Dict[str, List[str]] = {}
    for where, error in collection.errors.items():
        name, _, netns = where.partition(IN_NETNS)
        errors.setdefault(name, []).append(f"{error} (in netns {netns})" if netns else error)
    return tuple(CollectorHealth(name, bool(ok), seconds.get((name,), 0.0), tuple(errors.get(name, ())))
                 for (name,), ok in success.items())


def _features(collection: Collection) -> Tuple[Tuple[str, str], ...]:
    plan = collection.plan
    features = plan.features

    def state(*names: str) -> str:
        configured = [name for name in names if name in features]
        if not configured:
            return "off"
        return ",".join(f"{name.split('_')[0]} {'on' if features[name] else 'off (see the log)'}"
                        for name in configured)

    options = plan.own.options
    return (
        ("namespaces", state("named_namespaces", "process_namespaces")),
        ("cgroups", "on" if features.get("cgroup_attribution") else
         "off (see the log)" if "cgroup_attribution" in features else "off"),
        ("histograms", "on" if options.detail.bounds else "off"),
        ("memory", ",".join(sorted(options.memory)) or "off"),
        ("port_groups", ",".join(g.name for g in options.port_groups) or "none"),
        ("series_budget", str(plan.series_budget) if plan.series_budget else "none"),
    )


def _failures(collection: Collection, collectors: Tuple[CollectorHealth, ...]) -> Tuple[str, ...]:
    lines = [f"collector {c.name}: {error}" for c in collectors for error in c.errors]
    for (source, reason), ok in collection.samples.get(m.NETNS_DISCOVERY, ()):
        if not ok:
            lines.append(f"namespace discovery ({source}): {reason.replace('_', ' ')}")
    for (reason,), count in collection.samples.get(m.NETNS_CANNOT_ENTER, ()):
        lines.append(f"{int(count)} network namespace(s) not entered: {reason.replace('_', ' ')}")
    for (label,), dropped in collection.samples.get(m.SERIES_DROPPED, ()):
        if dropped:
            lines.append(f"series budget: {int(dropped)} {label} series left out")
    return tuple(lines)


def _sockets(samples: _Samples) -> Tuple[SocketRow, ...]:
    groups: Dict[tuple, dict] = {}
    for labels, count in samples.rows(m.SOCKETS):
        group = groups.setdefault(labels[:3], {"states": {}, "rq": 0, "sq": 0})
        if count:
            group["states"][labels[3]] = group["states"].get(labels[3], 0) + int(count)
    for metric, key in ((m.RECEIVE_QUEUE, "rq"), (m.SEND_QUEUE, "sq")):
        for labels, value in samples.rows(metric):
            if labels[:3] in groups:
                groups[labels[:3]][key] += int(value)
    accept = samples.joined(m.ACCEPT_QUEUE_LENGTH, m.ACCEPT_QUEUE_LIMIT)
    accept_sums: Dict[tuple, List[int]] = {}
    for (_, labels), (length, limit) in accept.items():
        row = accept_sums.setdefault(labels, [0, 0])
        row[0] += length
        row[1] += limit
    rows = []
    for labels, group in groups.items():
        states = dict(sorted(group["states"].items(), key=lambda item: (-item[1], item[0])))
        if states:
            length, limit = accept_sums.get(labels, (0, 0))
            rows.append(SocketRow(*labels, sum(states.values()), states, group["rq"], group["sq"], length, limit))
    return tuple(rows)


def _queues(samples: _Samples, metric: m.Metric, histogram: m.Metric) -> Tuple[QueueRow, ...]:
    totals: Dict[tuple, int] = {}
    for labels, value in samples.rows(metric):
        totals[labels[:3]] = totals.get(labels[:3], 0) + int(value)
    distributions: Dict[tuple, list] = {}
    for labels, (buckets, _) in samples.rows(histogram):
        distributions[labels] = buckets
    rows = [QueueRow(*labels, total, *_distribution(distributions.get(labels)))
            for labels, total in totals.items() if total]
    return tuple(sorted(rows, key=lambda row: (-row.bytes, row.family, row.socket_type, row.protocol)))


def _distribution(buckets: Optional[list]):
    """(sockets, sockets with a non-empty queue, (above, at most) bytes of the fullest) from cumulative buckets."""
    if not buckets:
        return None, None, None
    total = buckets[-1][1]
    holding = total - buckets[0][1] if float(buckets[0][0]) == 0 else None
    previous = None
    for le, count in buckets:
        if count >= total:
            return int(total), holding, (previous, None if le == "+Inf" else int(float(le)))
        previous = int(float(le))
    return int(total), holding, None


def _udp(samples: _Samples) -> Tuple[UdpRow, ...]:
    rows: Dict[tuple, list] = {}
    for i, metric in enumerate((m.UDP_RECEIVE_BUFFER_ERRORS, m.UDP_RECEIVE_ERRORS)):
        for labels, value in samples.rows(metric):
            rows.setdefault(labels, [None, None, None])[i] = int(value)
    dropped = m.MEMORY[-1]  # sockdiag_dropped_packets
    for labels, value in samples.rows(dropped):
        family, _, protocol, _ = labels
        if protocol in ("udp", "udplite"):
            row = rows.setdefault((family, protocol), [None, None, None])
            row[2] = (row[2] or 0) + int(value)
    return tuple(UdpRow(*labels, *values) for labels, values in rows.items())


def _ports(samples: _Samples) -> Tuple[PortsRow, ...]:
    rows: Dict[str, dict] = {}

    def row(where: str) -> dict:
        return rows.setdefault(where, {"range_size": None, "usage": {}, "destinations": [], "timewait": 0,
                                       "timewait_limit": None})

    for where, _, value in samples.labelled(m.EPHEMERAL_RANGE):
        row(where)["range_size"] = int(value)
    for where, (family,), value in samples.labelled(m.EPHEMERAL_USAGE):
        row(where)["usage"][family] = value
    for where, (family, destination), value in samples.labelled(m.EPHEMERAL_DESTINATION_USAGE):
        row(where)["destinations"].append((family, destination, value))
    for where, _, value in samples.labelled(m.TIMEWAIT_MINISOCKETS):
        row(where)["timewait"] += int(value)
    for where, _, value in samples.labelled(m.TIMEWAIT_BUCKETS):
        row(where)["timewait_limit"] = int(value)
    made = [PortsRow(where, r["range_size"], r["usage"],
                     tuple(sorted(r["destinations"], key=lambda d: (-d[2], d[0], d[1]))), r["timewait"],
                     r["timewait_limit"]) for where, r in rows.items()]
    return tuple(sorted(made, key=lambda p: (-p.busiest, -p.timewait, p.netns)))


def _namespaces(collection: Collection) -> Tuple[NamespaceRow, ...]:
    sockets: Dict[str, int] = {}
    for labels, count in collection.samples.get(m.SOCKETS, ()):
        sockets[labels[0]] = sockets.get(labels[0], 0) + int(count)
    owners = {labels[0]: labels[3] for labels, _ in collection.samples.get(m.NETNS_INFO, ())}
    failures: Dict[str, List[str]] = {}
    for where, error in collection.errors.items():
        name, _, netns = where.partition(IN_NETNS)
        failures.setdefault(netns, []).append(f"{name}: {error}")
    rows = []
    for (label,), up in collection.samples.get(m.NETNS_UP, ()):
        failed = tuple(failures.get(label, ())) or (() if up else ("not entered",))
        rows.append(NamespaceRow(label, owners.get(label, ""), sockets.get(label, 0), bool(up), failed))
    return tuple(sorted(rows, key=lambda row: (-row.sockets, row.netns)))


# -- words both renderers use


def printable(text: str) -> str:
    """text with every character a terminal or a reader would not show as itself escaped (\\x1b, \\n, \\u200b):
    unix socket names are whatever a local user chose, escape sequences included."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
                   for ch in text)


def size(n: Optional[int]) -> str:
    """Bytes for people: 0 B, 512 B, 1.5 KiB, 3.0 MiB."""
    if n is None:
        return "-"
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def seconds(t: float) -> str:
    return f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"


def span(t: float) -> str:
    """A duration for people: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    t = int(max(t, 0))
    if t < 60:
        return f"{t} s"
    if t < 3600:
        return f"{t // 60} min"
    if t < 86400:
        return f"{t // 3600} h {t % 3600 // 60} min"
    return f"{t // 86400} d {t % 86400 // 3600} h"


def largest(row: QueueRow) -> str:
    """The fullest socket's queue as the histogram bounds it: "<= 64.0 KiB", "> 16.0 MiB", "-" without one."""
    if row.largest is None:
        return "-"
    above, at_most = row.largest
    return f"> {size(above)}" if at_most is None else f"<= {size(at_most)}"


def kind(family: str, socket_type: str, protocol: str) -> str:
    """ "inet tcp", "unix stream", "netlink route (raw)": what a row counts, in the words of ss."""
    if family in ("inet", "inet6"):
        return f"{family} {protocol}"
    if protocol:
        return f"{family} {protocol} ({socket_type})" if socket_type else f"{family} {protocol}"
    return f"{family} {socket_type}".strip()


def shares(row: PortsRow) -> str:
    """The busiest destination's share of the port range per family: "inet 12.50%, inet6 0.04%"; "none"."""
    return ", ".join(f"{family} {share:.2%}" for family, share in sorted(row.usage.items())) or "none"


def dash(value) -> str:
    """A number that may be unknown (None)."""
    return "-" if value is None else str(value)
