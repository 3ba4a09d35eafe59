"""What a collector is, what it writes into, and the emitters shared by the socket-family collectors."""

import time
from typing import Dict, List, Optional, Tuple

from .. import metrics as m
from ..diag.decoder import Layout, Tally
from ..diag.errors import DiagUnsupported
from ..diag.netlink import DiagSocket
from .names import state_name


class Samples:
    """The samples one collector produced in one collection: metric -> [(label values, value)]."""

    def __init__(self):
        self.by_metric: Dict[m.Metric, List[Tuple[tuple, float]]] = {}

    def add(self, metric: m.Metric, labels: tuple, value: float) -> None:
        self.by_metric.setdefault(metric, []).append((labels, value))


class Context:
    """What collectors read from: the diag socket of the namespace being collected.

    A dump the kernel has no handler for is not asked again for recheck_unsupported seconds: on kernels with
    loadable modules each such request makes the kernel try modprobe.
    """

    def __init__(self, diag: DiagSocket, recheck_unsupported: float = 300.0, clock=time.monotonic):
        self.diag = diag
        self.recheck_unsupported = recheck_unsupported
        self._clock = clock
        self._unsupported: Dict[bytes, Tuple[float, DiagUnsupported]] = {}

    def dump(self, request: bytes, layout: Layout, what: str) -> Tally:
        """The tally of one dump; raises DiagUnsupported, from memory while the last refusal is recent."""
        known = self._unsupported.get(request)
        if known is not None and self._clock() < known[0]:
            raise known[1]
        try:
            return self.diag.dump(request, layout, what)
        except DiagUnsupported as e:
            self._unsupported[request] = (self._clock() + self.recheck_unsupported, e)
            raise


class Collector:
    """One unit of collection, enabled with --collector.<name>, timed and reported on its own."""

    name = ""
    help = ""

    def collect(self, ctx: Context, out: Samples) -> None:
        raise NotImplementedError


def dump_or_none(ctx: Context, out: Samples, request: bytes, layout: Layout, family: str, protocol: str,
                 what: str) -> Optional[Tally]:
    """Dump and report the handler's availability; None (after saying so) when this kernel has no handler."""
    try:
        tally = ctx.dump(request, layout, what)
    except DiagUnsupported:
        out.add(m.HANDLER_AVAILABLE, (family, protocol), 0)
        return None
    out.add(m.HANDLER_AVAILABLE, (family, protocol), 1)
    out.add(m.SOURCE_INFO, (family, protocol, "sock_diag"), 1)
    return tally


def emit_states(out: Samples, labels: tuple, counts: Dict[str, list], listen_state: Optional[str]) -> None:
    """Emit count and queue series for each state name of one (family, socket_type, protocol).

    counts: state name -> [count, receive queue, send queue]. The listener state's queues are accept-queue
    length and limit, never data: they go to the accept-queue metrics.
    """
    for state, (count, rq, wq) in counts.items():
        out.add(m.SOCKETS, labels + (state,), count)
        if state == listen_state:
            out.add(m.ACCEPT_QUEUE_LENGTH, labels, rq)
            out.add(m.ACCEPT_QUEUE_LIMIT, labels, wq)
        else:
            out.add(m.RECEIVE_QUEUE, labels + (state,), rq)
            out.add(m.SEND_QUEUE, labels + (state,), wq)


def by_state_name(rows, state_names: dict) -> Dict[str, list]:
    """Fold (state number, [count, rq(, wq)]) rows into state name -> [count, rq, wq], with a zero row for every
    known state so that dashboards and alerts see no gaps."""
    counts = {name: [0, 0, 0] for name in state_names.values()}
    for state, row in rows:
        total = counts.setdefault(state_name(state_names, state), [0, 0, 0])
        for i, value in enumerate(row[:3]):
            total[i] += value
    return counts
