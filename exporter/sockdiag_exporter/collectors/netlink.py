"""Netlink sockets by netlink protocol through netlink_diag; queues from their SK_MEMINFO, as ss shows them."""

from ..diag import constants as c
from ..diag import requests
from . import names
from .base import Collector, Context, Samples, by_state_name, dump_or_none, emit_histograms, emit_states


class NetlinkCollector(Collector):
    """Counts, receive/send memory and their distributions by socket type, netlink protocol and state."""

    name = "netlink"
    help = "netlink sockets"

    def collect(self, ctx: Context, out: Samples) -> None:
        opts = ctx.options
        memory = self.name in opts.memory
        layout = requests.NETLINK_MEMORY_LAYOUT if memory else requests.NETLINK_LAYOUT
        tally = dump_or_none(ctx, out, requests.netlink(), layout, "netlink", "", "netlink dump", opts.detail)
        if tally is None:
            return
        width = 3 + (c.SK_MEMINFO_VARS if memory else 0)
        groups = {}
        for word in tally:  # word = family | type << 8 | protocol << 16 | state << 24
            groups.setdefault(((word >> 8) & 0xFF, (word >> 16) & 0xFF), []).append(word)
        for (sock_type, protocol), words in sorted(groups.items()):
            labels = ("netlink", names.socket_type_name(sock_type), names.netlink_protocol_name(protocol))
            rows = [(w >> 24, tally[w]) for w in words]
            emit_states(out, labels, by_state_name(rows, names.NETLINK_STATES, width), None)
            emit_histograms(out, labels, (tally.hist[w] for w in words if w in tally.hist), opts.detail.bounds,
                            (sum(tally[w][1] for w in words), sum(tally[w][2] for w in words)))


COLLECTORS = (NetlinkCollector(),)
