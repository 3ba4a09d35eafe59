"""IPv4 and IPv6 sockets of one protocol (tcp, udp, udplite, raw, mptcp, sctp, dccp) through inet_diag."""

from typing import NamedTuple, Optional

from .. import metrics as m
from ..diag import constants as c
from ..diag import requests
from ..diag.errors import DiagUnsupported
from ..diag.procfs import parse_inet_table
from . import names
from .base import Collector, Context, Samples
from .emit import emit_cgroups, emit_port_groups, emit_tally
from .listeners import Listener, emit_listeners, interface_address, near_limit

FAMILIES = ((c.AF_INET, "inet", ""), (c.AF_INET6, "inet6", "6"))
LISTEN = names.TCP_STATES[c.TCP_LISTEN]


class Protocol(NamedTuple):
    name: str
    number: int
    socket_type: str
    states: dict
    procfs: Optional[str]  # /proc/net table to read when the diag handler is missing ("raw" -> raw, raw6)
    listeners: bool  # has listening sockets, reported one by one
    help: str

    @property
    def core(self) -> bool:
        """Alerts and dashboards read its states one by one: they always get a series (see emit.fill_for)."""
        return self.name in ("tcp", "udp")


PROTOCOLS = (
    Protocol("tcp", c.IPPROTO_TCP, "stream", names.TCP_STATES, None, True, "TCP sockets"),
    Protocol("udp", c.IPPROTO_UDP, "dgram", names.DGRAM_STATES, None, False, "UDP sockets"),
    Protocol("udplite", c.IPPROTO_UDPLITE, "dgram", names.DGRAM_STATES, None, False, "UDP-Lite sockets"),
    Protocol("raw", c.IPPROTO_RAW, "raw", names.DGRAM_STATES, "raw", False,
             "raw IP sockets (from /proc/net/raw{,6} where the kernel has no raw_diag)"),
    Protocol("mptcp", c.IPPROTO_MPTCP, "stream", names.TCP_STATES, None, True, "MPTCP sockets"),
    # One-to-one SCTP sockets are SOCK_STREAM, one-to-many SOCK_SEQPACKET; inet_diag does not say which.
    Protocol("sctp", c.IPPROTO_SCTP, "", names.SCTP_STATES, None, True, "SCTP endpoints and associations"),
    Protocol("dccp", c.IPPROTO_DCCP, "dccp", names.TCP_STATES, None, True, "DCCP sockets"),
)


class InetCollector(Collector):
    """Counts, queue sums and distributions by state for one IP protocol over IPv4 and IPv6, its listeners one by
    one, memory when asked, and port groups.

    Listeners come from a dump of their own (the kernel then walks only the listening hash), the other sockets
    from one dump of every other state.
    """

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self.name = protocol.name
        self.help = protocol.help
        self.weight = {"tcp": 10, "udp": 2}.get(protocol.name, 1)  # TCP sockets are most of a busy host's

    def collect(self, ctx: Context, out: Samples) -> None:
        proto, opts = self.protocol, ctx.options
        memory = proto.name in opts.memory
        layout = requests.INET_MEMORY_LAYOUT if memory else requests.INET_LAYOUT
        width = 1 + layout.nvalues
        listeners, present = [], []
        # IPv4 and IPv6 dumps are independent: they run at once where parallel dumps are on
        for (_, family, _), (tally, source, found) in zip(FAMILIES, ctx.each(
                lambda fam: self._dump(ctx, fam, layout, memory), FAMILIES)):
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
                for i, value in enumerate((1, rec.length, rec.limit) + rec.memory):
                    listen_row[i] += value
                for group in opts.port_groups:
                    if rec.port in group.local:
                        group_listeners[group.name] = group_listeners.get(group.name, 0) + 1
                count, troubled = cgroup_listeners.get(rec.cgroup, (0, False))
                cgroup_listeners[rec.cgroup] = (count + 1, troubled or near_limit(rec.length, rec.limit))
                listeners.append(Listener(*labels, interface_address(rec.address, rec.ifindex), rec.length,
                                          rec.limit))
            emit_tally(out, tally, lambda key, labels=labels: (labels, proto.states, key.state), opts, LISTEN,
                       always=[(labels, proto.states)],
                       extra={labels: {LISTEN: listen_row}} if proto.listeners else None, core=proto.core)
            if opts.port_groups:
                emit_port_groups(out, opts, family, proto.name, tally, proto.states, LISTEN, group_listeners)
            if opts.cgroups:
                emit_cgroups(out, opts, family, proto.name, tally, proto.states, LISTEN, cgroup_listeners)
        if proto.listeners:
            emit_listeners(out, listeners, opts.max_listeners, present if opts.full else ())

    def _dump(self, ctx: Context, fam: tuple, layout, memory: bool):
        """The I/O of one address family: (tally or None, where it came from, listener records)."""
        proto, (family_number, family, suffix) = self.protocol, fam
        states = requests.INET_ALL_STATES & ~requests.LISTEN_STATES if proto.listeners else requests.INET_ALL_STATES
        try:
            tally = ctx.dump(requests.inet(family_number, proto.number, states, memory), layout,
                             f"{family} {proto.name} dump", ctx.options.detail_for(proto.name))
        except DiagUnsupported:
            if not proto.procfs:
                return None, None, []
            name = proto.procfs + suffix
            try:
                return parse_inet_table(ctx.proc.read(name), name, ctx.options.detail_for(proto.name).bounds), "procfs", []
            except DiagUnsupported:
                return None, None, []
        found = []
        if proto.listeners:
            found = ctx.records(requests.inet(family_number, proto.number, requests.LISTEN_STATES, memory),
                                requests.INET_LAYOUT, f"{family} {proto.name} listener dump", requests.inet_listener)
        return tally, "sock_diag", found


COLLECTORS = tuple(InetCollector(p) for p in PROTOCOLS)
