"""The host's monotonic protocol counters that alerts rate(): UDP receive errors, TCP listen overflows and drops."""

from .. import metrics as m
from ..diag.errors import DiagUnsupported
from ..diag.procfs import read_counters
from .base import Collector, Context, Samples

# (metric, family, protocol, /proc/net table, counter name)
UDP_COUNTERS = (
    (m.UDP_RECEIVE_BUFFER_ERRORS, "inet", "udp", "snmp", "UdpRcvbufErrors"),
    (m.UDP_RECEIVE_ERRORS, "inet", "udp", "snmp", "UdpInErrors"),
    (m.UDP_RECEIVE_BUFFER_ERRORS, "inet", "udplite", "snmp", "UdpLiteRcvbufErrors"),
    (m.UDP_RECEIVE_ERRORS, "inet", "udplite", "snmp", "UdpLiteInErrors"),
    (m.UDP_RECEIVE_BUFFER_ERRORS, "inet6", "udp", "snmp6", "Udp6RcvbufErrors"),
    (m.UDP_RECEIVE_ERRORS, "inet6", "udp", "snmp6", "Udp6InErrors"),
    (m.UDP_RECEIVE_BUFFER_ERRORS, "inet6", "udplite", "snmp6", "UdpLite6RcvbufErrors"),
    (m.UDP_RECEIVE_ERRORS, "inet6", "udplite", "snmp6", "UdpLite6InErrors"),
)
TCP_COUNTERS = ((m.TCP_LISTEN_OVERFLOWS, "TcpExtListenOverflows"), (m.TCP_LISTEN_DROPS, "TcpExtListenDrops"))


class NetstatCollector(Collector):
    """Counters from /proc/net/snmp, snmp6 and netstat (per network namespace)."""

    name = "netstat"
    help = "UDP receive errors and TCP listen overflow counters from /proc/net/snmp{,6} and netstat"

    def collect(self, ctx: Context, out: Samples) -> None:
        tables = {"snmp": read_counters(ctx.proc, "snmp"), "netstat": read_counters(ctx.proc, "netstat")}
        try:
            tables["snmp6"] = read_counters(ctx.proc, "snmp6")
        except DiagUnsupported:  # IPv6 disabled: no snmp6
            tables["snmp6"] = {}
        for metric, family, protocol, table, counter in UDP_COUNTERS:
            if counter in tables[table]:
                out.add(metric, (family, protocol), tables[table][counter])
        for metric, counter in TCP_COUNTERS:
            if counter in tables["netstat"]:
                out.add(metric, (), tables["netstat"][counter])


COLLECTORS = (NetstatCollector(),)
