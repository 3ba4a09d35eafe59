"""IPv4 and IPv6 sockets of one protocol (tcp, udp, udplite, raw, mptcp, sctp, dccp) through inet_diag."""

from functools import lru_cache
from typing import Dict, List, NamedTuple, Optional, Tuple

from .. import metrics as m
from ..diag import constants as c
from ..diag import requests
from ..diag.errors import DiagError, DiagUnsupported
from ..diag.procfs import PortRange, parse_inet_table, read_port_range, read_sysctl_int
from ..diag.tally import Tally, port_table
from . import names
from .base import Collector, Context, Samples
from .emit import emit_cgroups, emit_port_groups, emit_tally
from .listeners import Listener, emit_listeners, emit_receivers, interface_address, near_limit

FAMILIES = ((c.AF_INET, "inet", ""), (c.AF_INET6, "inet6", "6"))
LISTEN = names.TCP_STATES[c.TCP_LISTEN]
INET_LAYOUTS = (requests.INET_LAYOUT, requests.INET_MEMORY_LAYOUT)
SCTP_LAYOUTS = (requests.SCTP_LAYOUT, requests.SCTP_MEMORY_LAYOUT)
WILDCARD = bytes(16)  # 0.0.0.0 and :: alike
# Row of a memory layout: [count, receive queue, send queue, SK_MEMINFO values...]
RCVBUF = 3 + requests.MEMINFO_NAMES.index("rcvbuf")
DROPS = 3 + requests.MEMINFO_NAMES.index("drops")
# The states of TCP's minisockets, whose messages carry fewer attributes: TIME_WAIT and request sockets (SYN_RECV;
# NEW_SYN_RECV in the hash). The kernel filters a TIME_WAIT minisocket by its substate: the few in FIN_WAIT2 come
# with the full sockets.
MINISOCKETS = 1 << c.TCP_TIME_WAIT | 1 << c.TCP_SYN_RECV | 1 << c.TCP_NEW_SYN_RECV
ALL_BUT_LISTEN = requests.INET_ALL_STATES & ~requests.LISTEN_STATES  # a main dump of a protocol with listeners
SPLIT_KEY = "tcp split"  # Context.kept: the families whose next dump is split (_worth_splitting)
SPLIT_MIN, SPLIT_SHARE = 4096, 32


class PortUse(NamedTuple):
    """One family's ephemeral-port analysis: sockets towards the busiest destination (per local address); with
    ephemeral_ports.destinations, that many busiest destinations (remote address and port: the busiest local
    address's sockets), the busiest first, and how many others there are."""

    busiest: int
    destinations: List[Tuple[str, int]]
    folded: int


class Analysis(NamedTuple):
    """The last ephemeral-port analysis of a network namespace (kept in its Context between collections)."""

    when: float
    ports: PortRange
    families: Dict[str, PortUse]


class Protocol(NamedTuple):
    name: str
    number: int
    socket_type: str
    states: dict
    procfs: Optional[str]  # /proc/net table to read when the diag handler is missing ("raw" -> raw, raw6)
    listeners: bool  # has listening sockets, reported one by one
    help: str
    layouts: tuple = INET_LAYOUTS  # (without, with SK_MEMINFO)
    half_open: bool = False  # its listeners have a SYN queue: connections in SYN_RECV counted per listener
    clients: bool = False  # TCP: ephemeral port usage per destination, TIME_WAIT minisockets and their limit
    receivers: bool = False  # unconnected sockets reported one by one (UDP receivers); needs SK_MEMINFO

    @property
    def core(self) -> bool:
        """Alerts and dashboards read its states one by one: they always get a series (see emit.fill_for)."""
        return self.name in ("tcp", "udp")


PROTOCOLS = (
    Protocol("tcp", c.IPPROTO_TCP, "stream", names.TCP_STATES, None, True, "TCP sockets", half_open=True,
             clients=True),
    Protocol("udp", c.IPPROTO_UDP, "dgram", names.DGRAM_STATES, None, False, "UDP sockets", receivers=True),
    Protocol("udplite", c.IPPROTO_UDPLITE, "dgram", names.DGRAM_STATES, None, False, "UDP-Lite sockets",
             receivers=True),
    Protocol("raw", c.IPPROTO_RAW, "raw", names.DGRAM_STATES, "raw", False,
             "raw IP sockets (from /proc/net/raw{,6} where the kernel has no raw_diag)"),
    Protocol("mptcp", c.IPPROTO_MPTCP, "stream", names.TCP_STATES, None, True, "MPTCP sockets"),
    # One-to-one SCTP sockets are SOCK_STREAM, one-to-many SOCK_SEQPACKET; inet_diag does not say which.
    Protocol("sctp", c.IPPROTO_SCTP, "", names.SCTP_STATES, None, True, "SCTP endpoints and associations",
             layouts=SCTP_LAYOUTS),
    Protocol("dccp", c.IPPROTO_DCCP, "dccp", names.TCP_STATES, None, True, "DCCP sockets", half_open=True),
)


@lru_cache(maxsize=8)
def ephemeral_table(ports: PortRange, services: bool = False) -> bytes:
    """A port table of the ports connect() picks from; with services, of every other port (where services bind).
    As bytes: 64 KiB, where a list of 65536 ints takes 512 KiB (cached for up to 8 ranges, both kinds)."""
    table = port_table(low=ports.low, high=ports.high, without=ports.reserved)
    return bytes(1 - flag for flag in table) if services else bytes(table)


class InetCollector(Collector):
    """Counts, queue sums and distributions by state for one IP protocol over IPv4 and IPv6, its listeners one by
    one (with their drops and half-open connections), UDP receivers one by one, memory when asked, port groups;
    for TCP the ephemeral port usage per destination and the TIME_WAIT minisockets.

    Listeners come from a dump of their own (the kernel then walks only the listening hash; it is small, so it
    always asks for SK_MEMINFO: the drops), the other sockets from one dump of every other state.
    """

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self.name = protocol.name
        self.help = protocol.help
        self.weight = {"tcp": 10, "udp": 2}.get(protocol.name, 1)  # TCP sockets are most of a busy host's

    def collect(self, ctx: Context, out: Samples) -> None:
        proto, opts = self.protocol, ctx.options
        memory = proto.name in opts.memory
        layout = proto.layouts[memory or proto.receivers]  # receivers need rcvbuf and drops
        width = 3 + (len(requests.MEMINFO_NAMES) if memory else 0)
        ports = self._port_range(ctx, out) if proto.clients or proto.receivers else None
        analysis = _due_analysis(ctx, ports) if proto.clients else None  # None: keep the last one
        detail = self._detail(opts.detail_for(proto.name), ports, analysis is not None)
        listeners, present, half_open = [], [], {}
        receivers: Dict[tuple, list] = {}
        unlisted: Dict[Tuple[str, str, str], list] = {}
        # IPv4 and IPv6 dumps (and the parts of a split one) are independent: they run at once where parallel dumps
        # are on
        parts = self._parts(ctx)
        dumped = dict(zip(FAMILIES, [(None, None, [])] * len(FAMILIES)))
        for (fam, _, first), (tally, source, found) in zip(parts, ctx.each(
                lambda part: self._dump(ctx, *part, layout, memory or proto.receivers, detail), parts)):
            if first:
                dumped[fam] = (tally, source, found)
            elif tally is not None and dumped[fam][0] is not None:
                dumped[fam][0].merge(tally)
        split = set()
        for (family_number, family, _), (tally, source, found) in dumped.items():
            if source != "sock_diag" or opts.full:  # the default profile says only what is missing, and where from
                out.add(m.HANDLER_AVAILABLE, (family, proto.name), int(source == "sock_diag"))
            if tally is None:
                continue
            if source != "sock_diag" or opts.full:
                out.add(m.SOURCE_INFO, (family, proto.name, source), 1)
            labels = (family, proto.socket_type, proto.name)
            present.append(labels)
            listen_row, group_listeners, cgroup_listeners = [0] * width, {}, {}
            for rec in found:
                for i, value in enumerate((1, rec.length, rec.limit) + (rec.memory if memory else ())):
                    listen_row[i] += value
                for group in opts.port_groups:
                    if rec.port in group.local:
                        group_listeners[group.name] = group_listeners.get(group.name, 0) + 1
                count, troubled = cgroup_listeners.get(rec.cgroup, (0, False))
                cgroup_listeners[rec.cgroup] = (count + 1, troubled or near_limit(rec.length, rec.limit))
                listeners.append(Listener(*labels, interface_address(rec.address, rec.ifindex), rec.length,
                                          rec.limit, rec.memory[DROPS - 3] if rec.memory else 0))
            if proto.half_open:
                half_open.update(_half_open(family_number, labels, tally, {lst.address for lst in listeners}))
            emit_tally(out, tally, lambda key, labels=labels: (labels, proto.states, key.state), opts, LISTEN,
                       always=[(labels, proto.states)],
                       extra={labels: {LISTEN: listen_row}} if proto.listeners else None, core=proto.core,
                       width=width)
            if proto.clients:
                for key, count in sorted(tally.minisockets()):
                    out.add(m.TIMEWAIT_MINISOCKETS, (family, names.state_name(names.TCP_STATES, key.state)), count)
                if analysis is not None:
                    analysis.families[family] = _port_use(family_number, tally, opts.destinations)
                if _worth_splitting(tally):
                    split.add(family)
            if proto.receivers:
                unlisted[labels] = _receivers(family_number, labels, tally, receivers)
            if opts.port_groups:
                emit_port_groups(out, opts, family, proto.name, tally, proto.states, LISTEN, group_listeners)
            if opts.cgroups:
                emit_cgroups(out, opts, family, proto.name, tally, proto.states, LISTEN, cgroup_listeners)
        if proto.listeners:
            emit_listeners(out, listeners, opts.max_listeners, present if opts.full else (),
                           half_open if proto.half_open else None, zeros=opts.full)
        if proto.receivers:
            emit_receivers(out, receivers, opts.max_receivers, unlisted, zeros=opts.full)
        if proto.clients:
            _emit_port_use(out, ctx, analysis)
            ctx.kept[SPLIT_KEY] = split

    def _parts(self, ctx: Context) -> List[Tuple[tuple, int, bool]]:
        """(family, states, first part of the family) of every main dump of this collection: one per family, or two
        for a TCP family whose last dump was worth splitting (_worth_splitting). The minisockets' parts come last:
        they are the smallest, and an idle worker takes the shared parts in this order (2 cores, 100k, same runs
        against the families' parts in a row: full scrape 0.90 and 0.84 of its time, medians of 9 and 11 rounds)."""
        proto = self.protocol
        states = ALL_BUT_LISTEN if proto.listeners else requests.INET_ALL_STATES
        split = ctx.kept.get(SPLIT_KEY, ()) if proto.clients else ()
        return ([(fam, states & ~MINISOCKETS if fam[1] in split else states, True) for fam in FAMILIES]
                + [(fam, states & MINISOCKETS, False) for fam in FAMILIES if fam[1] in split])

    def _dump(self, ctx: Context, fam: tuple, states: int, first: bool, layout, memory: bool, detail):
        """The I/O of one address family (or, not first, of a part of its states after the first part): (tally or
        None, where it came from, listener records). Only TCP splits, and it has no /proc fallback: a part never
        reads /proc."""
        proto, (family_number, family, suffix) = self.protocol, fam
        try:
            tally = ctx.dump(requests.inet(family_number, proto.number, states, memory), layout,
                             f"{family} {proto.name} dump", detail)
        except DiagUnsupported:
            if not proto.procfs:
                return None, None, []
            name = proto.procfs + suffix
            try:
                return parse_inet_table(ctx.proc.read(name), name, detail.bounds), "procfs", []
            except DiagUnsupported:
                return None, None, []
        found = []
        if proto.listeners and first:  # the listener dump is small: it always carries SK_MEMINFO, for the drops
            found = ctx.records(requests.inet(family_number, proto.number, requests.LISTEN_STATES, True),
                                requests.INET_LAYOUT, f"{family} {proto.name} listener dump", requests.inet_listener)
        return tally, "sock_diag", found

    def _port_range(self, ctx: Context, out: Samples) -> Optional[PortRange]:
        """The namespace's ephemeral port range (and, for TCP, the TIME_WAIT bucket limit), None if unreadable."""
        try:
            ports = read_port_range(ctx.proc)
            if self.protocol.clients:
                out.add(m.EPHEMERAL_RANGE, (), ports.size)
                out.add(m.TIMEWAIT_BUCKETS, (), read_sysctl_int(ctx.proc, "ipv4/tcp_max_tw_buckets"))
            return ports
        except DiagError:  # no /proc/sys/net (a restricted container): the sockets are still counted
            return None

    def _detail(self, detail, ports: Optional[PortRange], analyze: bool):
        """What the main dump tallies beyond the configured detail, for this protocol."""
        proto = self.protocol
        if analyze:
            detail = detail._replace(ephemeral=ephemeral_table(ports))
        if proto.half_open:
            detail = detail._replace(local_state=c.TCP_SYN_RECV)
        if proto.receivers:
            detail = detail._replace(local_state=c.TCP_CLOSE,
                                     local_ports=None if ports is None else ephemeral_table(ports, services=True))
        return detail


def _worth_splitting(tally: Tally) -> bool:
    """Whether a TCP family's next dump is better made in two parts, the full sockets and the minisockets (TIME_WAIT
    and SYN_RECV): when the minisockets were at least 1/SPLIT_SHARE of at least SPLIT_MIN sockets. The kernel keeps
    both kinds in one hash, so a dump of all states interleaves their (shorter) messages with the others' and leaves
    few runs (runs.py); two dumps walk the hash twice but each sends messages of one shape. Measured on the bench's
    100k population (its IPv4 dump 24% minisockets; 2 cores): kernel time 28.7 ms -> 27.5 + 7.5, decoding (replayed)
    19.7 ms -> 6.9 + 2.4; the two parts run at once."""
    total = sum(row[0] for row in tally.rows.values())
    minisockets = sum(tally.timewait.values()) + tally.rows.get(c.TCP_SYN_RECV, (0,))[0]
    return total >= SPLIT_MIN and minisockets * SPLIT_SHARE >= total


def _endpoint(family_number: int, address: bytes, port: int, ifindex: int) -> str:
    return interface_address(requests.endpoint_text(family_number, address, port), ifindex)


def _half_open(family_number: int, labels: tuple, tally: Tally, addresses: set) -> Dict[tuple, int]:
    """Connections in SYN_RECV per listening address. A request socket has the address its SYN was sent to: the
    listener's own, or any of the host's for a wildcard listener (an IPv4 one, v4-mapped, for an IPv6 listener that
    takes IPv4 too); the listener bound to that device first, as the kernel looks it up."""
    counts: Dict[tuple, int] = {}
    for local, row in tally.by_local():
        for address, ifindex in ((local.address, local.ifindex), (local.address, 0), (WILDCARD, local.ifindex),
                                 (WILDCARD, 0)):
            text = _endpoint(family_number, address, local.port, ifindex)
            if text in addresses:
                counts[labels + (text,)] = counts.get(labels + (text,), 0) + row[0]
                break
    return counts


def _receivers(family_number: int, labels: tuple, tally: Tally, receivers: Dict[tuple, list]) -> list:
    """Add the unconnected sockets tallied by local address to receivers: [sockets, queue, buffer, drops]; return
    the row of the others (bound to an ephemeral port)."""
    unconnected = [0, 0, 0, 0]
    for entry in tally.entries():
        if entry.key.state == c.TCP_CLOSE:
            unconnected = [entry.row[0], entry.row[1], entry.row[RCVBUF], entry.row[DROPS]]
    for local, row in tally.by_local():
        receiver = [row[0], row[1], row[RCVBUF], row[DROPS]]
        receivers[labels + (_endpoint(family_number, local.address, local.port, local.ifindex),)] = receiver
        unconnected = [total - part for total, part in zip(unconnected, receiver)]
    return unconnected


def _due_analysis(ctx: Context, ports: Optional[PortRange]) -> Optional[Analysis]:
    """A new ephemeral-port analysis to fill in this collection, if one is due (none yet, the range changed, or
    ephemeral_ports.interval_seconds passed); None to keep the last one. Counting per destination is the one
    per-socket cost that grows with client sockets (about 13 ms at 48,000 of them: README, Performance)."""
    last = ctx.kept.get("ephemeral_ports")
    if ports is None:
        ctx.kept.pop("ephemeral_ports", None)
        return None
    if last is None or last.ports != ports or ctx.now() - last.when >= ctx.options.ports_interval:
        return Analysis(ctx.now(), ports, {})
    return None


def _port_use(family_number: int, tally: Tally, destinations: int) -> PortUse:
    """The busiest destination's sockets and, when asked for, the busiest destinations one by one."""
    named: Dict[str, int] = {}
    if destinations:
        for remote, count in tally.by_remote():  # the busiest first: a destination's first is its busiest
            named.setdefault(requests.endpoint_text(family_number, remote.address, remote.port), count)
            if len(named) == destinations:
                break
    folded = tally.remote_destinations() - len(named) if destinations else 0
    return PortUse(tally.busiest_remote(), list(named.items()), folded)


def _emit_port_use(out: Samples, ctx: Context, analysis: Optional[Analysis]) -> None:
    """The busiest destination's share of the range per family with such sockets, and (ephemeral_ports.
    destinations) the busiest destinations one by one: from this collection's analysis, else the last one."""
    if analysis is not None:
        ctx.kept["ephemeral_ports"] = analysis
    last = ctx.kept.get("ephemeral_ports")
    if last is None or not last.ports.size:
        return
    size, wanted = last.ports.size, ctx.options.destinations
    for family, use in sorted(last.families.items()):
        if use.busiest:
            out.add(m.EPHEMERAL_USAGE, (family,), use.busiest / size)
        if wanted:
            for destination, count in use.destinations:
                out.add(m.EPHEMERAL_DESTINATION_USAGE, (family, destination), count / size)
            out.add(m.EPHEMERAL_DESTINATIONS_FOLDED, (family,), use.folded)


COLLECTORS = tuple(InetCollector(p) for p in PROTOCOLS)
