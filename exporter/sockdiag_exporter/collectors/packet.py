"""Packet (AF_PACKET) sockets by socket type and ethertype through packet_diag; queues from SK_MEMINFO."""

from ..diag import requests
from . import names
from .base import Collector, Context, Samples, dump_family
from .emit import emit_tally


class PacketCollector(Collector):
    """Counts, receive/send memory and their distributions by socket type (raw, dgram) and ethertype; packet
    sockets have no state."""

    name = "packet"
    help = "packet (AF_PACKET) sockets"

    def collect(self, ctx: Context, out: Samples) -> None:
        tally = dump_family(ctx, out, self.name, "packet", lambda memory: requests.packet(),
                            (requests.PACKET_LAYOUT, requests.PACKET_MEMORY_LAYOUT))
        if tally is None:
            return
        emit_tally(out, tally, lambda key: (
            ("packet", names.socket_type_name(key.type), names.ethertype_name(key.protocol)), None, 0),
            ctx.options)


COLLECTORS = (PacketCollector(),)
