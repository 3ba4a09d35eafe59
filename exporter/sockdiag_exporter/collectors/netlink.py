"""Netlink sockets by netlink protocol through netlink_diag; queues from their SK_MEMINFO, as ss shows them."""

from ..diag import requests
from . import names
from .base import Collector, Context, Samples, by_state_name, dump_or_none, emit_states


class NetlinkCollector(Collector):
    """Counts and receive/send memory by socket type, netlink protocol and state (connected or not)."""

    name = "netlink"
    help = "netlink sockets"

    def collect(self, ctx: Context, out: Samples) -> None:
        tally = dump_or_none(ctx, out, requests.netlink(), requests.NETLINK_LAYOUT, "netlink", "", "netlink dump")
        if tally is None:
            return
        groups = {}
        for word, row in tally.items():  # word = family | type << 8 | protocol << 16 | state << 24
            groups.setdefault(((word >> 8) & 0xFF, (word >> 16) & 0xFF), []).append((word >> 24, row))
        for (sock_type, protocol), rows in sorted(groups.items()):
            labels = ("netlink", names.socket_type_name(sock_type), names.netlink_protocol_name(protocol))
            emit_states(out, labels, by_state_name(rows, names.NETLINK_STATES), None)


COLLECTORS = (NetlinkCollector(),)
