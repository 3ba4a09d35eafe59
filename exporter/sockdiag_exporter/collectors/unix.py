"""Unix domain sockets (stream, dgram, seqpacket) through unix_diag."""

from ..diag import requests
from . import names
from .base import Collector, Context, Samples, by_state_name, dump_or_none, emit_states


class UnixCollector(Collector):
    """Counts and queue sums by socket type and state; listeners' queues are accept-queue length and limit."""

    name = "unix"
    help = "unix domain sockets"

    def collect(self, ctx: Context, out: Samples) -> None:
        tally = dump_or_none(ctx, out, requests.unix(), requests.UNIX_LAYOUT, "unix", "", "unix dump")
        if tally is None:
            return
        by_type = {sock_type: [] for sock_type in names.UNIX_STATES}
        for word, row in tally.items():  # word = family | type << 8 | state << 16
            by_type.setdefault((word >> 8) & 0xFF, []).append(((word >> 16) & 0xFF, row))
        for sock_type, rows in by_type.items():
            counts = by_state_name(rows, names.UNIX_STATES.get(sock_type, {}))
            emit_states(out, ("unix", names.socket_type_name(sock_type), ""), counts, "listen")


COLLECTORS = (UnixCollector(),)
