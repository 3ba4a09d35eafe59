"""Netlink sockets by netlink protocol through netlink_diag; queues from their SK_MEMINFO, as ss shows them."""

from ..diag import requests
from . import names
from .base import Collector, Context, Samples, dump_family
from .emit import emit_tally


class NetlinkCollector(Collector):
    """Counts, receive/send memory and their distributions by socket type, netlink protocol and state."""

    name = "netlink"
    help = "netlink sockets"

    def collect(self, ctx: Context, out: Samples) -> None:
        tally = dump_family(ctx, out, self.name, "netlink", lambda memory: requests.netlink(),
                            (requests.NETLINK_LAYOUT, requests.NETLINK_MEMORY_LAYOUT))
        if tally is None:
            return

        def split(key):
            labels = ("netlink", names.socket_type_name(key.type), names.netlink_protocol_name(key.protocol))
            return labels, names.NETLINK_STATES, key.state

        emit_tally(out, tally, split, ctx.options)


COLLECTORS = (NetlinkCollector(),)
