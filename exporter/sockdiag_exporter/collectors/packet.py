"""Packet (AF_PACKET) sockets by socket type and ethertype through packet_diag; queues from SK_MEMINFO."""

from ..diag import constants as c
from ..diag import requests
from . import names
from .base import Collector, Context, Samples, dump_or_none, emit_histograms, emit_states


class PacketCollector(Collector):
    """Counts, receive/send memory and their distributions by socket type (raw, dgram) and ethertype; packet
    sockets have no state."""

    name = "packet"
    help = "packet (AF_PACKET) sockets"

    def collect(self, ctx: Context, out: Samples) -> None:
        opts = ctx.options
        memory = self.name in opts.memory
        layout = requests.PACKET_MEMORY_LAYOUT if memory else requests.PACKET_LAYOUT
        tally = dump_or_none(ctx, out, requests.packet(), layout, "packet", "", "packet dump", opts.detail)
        if tally is None:
            return
        width = 3 + (c.SK_MEMINFO_VARS if memory else 0)
        for word, row in sorted(tally.items()):  # word = family | type << 8 | pdiag_num << 16
            labels = ("packet", names.socket_type_name((word >> 8) & 0xFF), names.ethertype_name(word >> 16))
            emit_states(out, labels, {"": row[:width]}, None)
            emit_histograms(out, labels, [tally.hist[word]] if word in tally.hist else [], opts.detail.bounds,
                            (row[1], row[2]))


COLLECTORS = (PacketCollector(),)
