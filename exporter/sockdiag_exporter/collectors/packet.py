"""Packet (AF_PACKET) sockets by socket type and ethertype through packet_diag; queues from SK_MEMINFO."""

from ..diag import requests
from . import names
from .base import Collector, Context, Samples, dump_or_none, emit_states


class PacketCollector(Collector):
    """Counts and receive/send memory by socket type (raw, dgram) and ethertype; packet sockets have no state."""

    name = "packet"
    help = "packet (AF_PACKET) sockets"

    def collect(self, ctx: Context, out: Samples) -> None:
        tally = dump_or_none(ctx, out, requests.packet(), requests.PACKET_LAYOUT, "packet", "", "packet dump")
        if tally is None:
            return
        for word, row in sorted(tally.items()):  # word = family | type << 8 | pdiag_num << 16
            labels = ("packet", names.socket_type_name((word >> 8) & 0xFF), names.ethertype_name(word >> 16))
            emit_states(out, labels, {"": row[:3]}, None)


COLLECTORS = (PacketCollector(),)
