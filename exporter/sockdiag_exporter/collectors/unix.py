"""Unix domain sockets (stream, dgram, seqpacket) through unix_diag."""

from ..diag import constants as c
from ..diag import requests
from . import names
from .base import Collector, Context, Samples, dump_family
from .emit import emit_tally
from .listeners import Listener, emit_listeners

LISTENING_TYPES = (c.SOCK_STREAM, c.SOCK_SEQPACKET)


def _labels(sock_type: int) -> tuple:
    return ("unix", names.socket_type_name(sock_type), "")


class UnixCollector(Collector):
    """Counts, queue sums and distributions by socket type and state; listeners one by one by name (their queues
    are accept-queue length and limit); memory when asked."""

    name = "unix"
    help = "unix domain sockets"
    weight = 3

    def collect(self, ctx: Context, out: Samples) -> None:
        tally = dump_family(ctx, out, self.name, "unix", lambda memory: requests.unix(memory=memory),
                            (requests.UNIX_LAYOUT, requests.UNIX_MEMORY_LAYOUT))
        if tally is None:
            return
        emit_tally(out, tally, lambda key: (_labels(key.type), names.UNIX_STATES.get(key.type, {}), key.state),
                   ctx.options, "listen", always=[(_labels(t), s) for t, s in names.UNIX_STATES.items()], core=True)
        found = ctx.records(requests.unix(requests.LISTEN_STATES, names=True), requests.UNIX_LAYOUT,
                            "unix listener dump", requests.unix_listener)
        listeners = [Listener(*_labels(rec.type), rec.name, rec.length, rec.limit) for rec in found]
        emit_listeners(out, listeners, ctx.options.max_listeners,
                       [_labels(t) for t in LISTENING_TYPES] if ctx.options.full else (), zeros=ctx.options.full)


COLLECTORS = (UnixCollector(),)
