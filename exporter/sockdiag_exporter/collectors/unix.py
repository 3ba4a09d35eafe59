"""Unix domain sockets (stream, dgram, seqpacket) through unix_diag."""

from ..diag import constants as c
from ..diag import requests
from . import names
from .base import (Collector, Context, Listener, Samples, by_state_name, dump_or_none, emit_histograms,
                   emit_listeners, emit_states)


class UnixCollector(Collector):
    """Counts, queue sums and distributions by socket type and state; listeners one by one by name (their queues
    are accept-queue length and limit); memory when asked."""

    name = "unix"
    help = "unix domain sockets"

    def collect(self, ctx: Context, out: Samples) -> None:
        opts = ctx.options
        memory = self.name in opts.memory
        layout = requests.UNIX_MEMORY_LAYOUT if memory else requests.UNIX_LAYOUT
        tally = dump_or_none(ctx, out, requests.unix(memory=memory), layout, "unix", "", "unix dump", opts.detail)
        if tally is None:
            return
        width = 3 + (c.SK_MEMINFO_VARS if memory else 0)
        by_type = {sock_type: [] for sock_type in names.UNIX_STATES}
        for word in tally:  # word = family | type << 8 | state << 16
            by_type.setdefault((word >> 8) & 0xFF, []).append(word)
        for sock_type, words in by_type.items():
            labels = ("unix", names.socket_type_name(sock_type), "")
            rows = [((w >> 16) & 0xFF, tally[w]) for w in words]
            emit_states(out, labels, by_state_name(rows, names.UNIX_STATES.get(sock_type, {}), width), "listen")
            data = [w for w in words if (w >> 16) & 0xFF != c.TCP_LISTEN]
            emit_histograms(out, labels, (tally.hist[w] for w in data if w in tally.hist), opts.detail.bounds,
                            (sum(tally[w][1] for w in data), sum(tally[w][2] for w in data)))
        found = ctx.records(requests.unix(requests.LISTEN_STATES, names=True), requests.UNIX_LAYOUT,
                            "unix listener dump", requests.unix_listener)
        listeners = [Listener("unix", names.socket_type_name(t), "", name, length, limit)
                     for t, name, length, limit in found]
        emit_listeners(out, listeners, opts.max_listeners,
                       [("unix", names.socket_type_name(t), "") for t in (c.SOCK_STREAM, c.SOCK_SEQPACKET)])


COLLECTORS = (UnixCollector(),)
