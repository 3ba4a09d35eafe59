"""IPv4 and IPv6 sockets of one protocol (tcp, udp, udplite, raw, mptcp, sctp, dccp) through inet_diag."""

from typing import NamedTuple, Optional

from .. import metrics as m
from ..diag import constants as c
from ..diag import requests
from ..diag.errors import DiagUnsupported
from ..diag.procfs import read_inet_table
from . import names
from .base import Collector, Context, Samples, by_state_name, dump_or_none, emit_states

FAMILIES = ((c.AF_INET, "inet", ""), (c.AF_INET6, "inet6", "6"))


class Protocol(NamedTuple):
    name: str
    number: int
    socket_type: str
    states: dict
    procfs: Optional[str]  # /proc/net table to read when the diag handler is missing ("raw" -> raw, raw6)
    help: str


PROTOCOLS = (
    Protocol("tcp", c.IPPROTO_TCP, "stream", names.TCP_STATES, None, "TCP sockets"),
    Protocol("udp", c.IPPROTO_UDP, "dgram", names.DGRAM_STATES, None, "UDP sockets"),
    Protocol("udplite", c.IPPROTO_UDPLITE, "dgram", names.DGRAM_STATES, None, "UDP-Lite sockets"),
    Protocol("raw", c.IPPROTO_RAW, "raw", names.DGRAM_STATES, "raw",
             "raw IP sockets (from /proc/net/raw{,6} where the kernel has no raw_diag)"),
    Protocol("mptcp", c.IPPROTO_MPTCP, "stream", names.TCP_STATES, None, "MPTCP sockets"),
    # One-to-one SCTP sockets are SOCK_STREAM, one-to-many SOCK_SEQPACKET; inet_diag does not say which.
    Protocol("sctp", c.IPPROTO_SCTP, "", names.SCTP_STATES, None, "SCTP endpoints and associations"),
    Protocol("dccp", c.IPPROTO_DCCP, "dccp", names.TCP_STATES, None, "DCCP sockets"),
)


class InetCollector(Collector):
    """Counts and queue sums by state for one IP protocol, over IPv4 and IPv6."""

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self.name = protocol.name
        self.help = protocol.help

    def collect(self, ctx: Context, out: Samples) -> None:
        proto = self.protocol
        for family_number, family, suffix in FAMILIES:
            what = f"{family} {proto.name} dump"
            tally = dump_or_none(ctx, out, requests.inet(family_number, proto.number), requests.INET_LAYOUT,
                                 family, proto.name, what)
            if tally is None and proto.procfs:
                try:
                    tally = read_inet_table(proto.procfs + suffix)
                except DiagUnsupported:
                    continue
                out.add(m.SOURCE_INFO, (family, proto.name, "procfs"), 1)
            if tally is None:
                continue
            counts = by_state_name(tally.items(), proto.states)
            emit_states(out, (family, proto.socket_type, proto.name), counts, names.TCP_STATES[c.TCP_LISTEN])


COLLECTORS = tuple(InetCollector(p) for p in PROTOCOLS)
