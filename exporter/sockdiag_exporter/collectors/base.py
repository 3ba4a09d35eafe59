"""What a collector is, what it reads from (Context) and what it writes into (Samples)."""

import time
from typing import Callable, Dict, List, Optional, Tuple

from .. import metrics as m
from ..diag.errors import DiagUnsupported
from ..diag.layout import Layout
from ..diag.netlink import DiagSocket
from ..diag.procfs import ProcNet
from ..diag.tally import NO_DETAIL, Detail, Tally
from .options import DEFAULT_OPTIONS, Options


class Samples:
    """The samples one collector produced in one collection: metric -> [(label values, value)].

    A gauge histogram's value is ([(le, cumulative count)...] ending with +Inf, sum).
    """

    def __init__(self):
        self.by_metric: Dict[m.Metric, List[Tuple[tuple, object]]] = {}

    def add(self, metric: m.Metric, labels: tuple, value) -> None:
        self.by_metric.setdefault(metric, []).append((labels, value))


class Context:
    """What collectors read from in one network namespace: its diag socket, its /proc/net, the options, and the
    background objects collectors keep there (a destroy-event subscriber), closed with it.

    A dump the kernel has no handler for is not asked again for recheck_unsupported seconds: on kernels with
    loadable modules each such request makes the kernel try modprobe.
    """

    def __init__(self, diag: DiagSocket, recheck_unsupported: float = 300.0, options: Options = DEFAULT_OPTIONS,
                 proc: Optional[ProcNet] = None, clock=time.monotonic):
        self.diag = diag
        self.proc = proc or ProcNet()
        self.recheck_unsupported = recheck_unsupported
        self.options = options
        self._clock = clock
        self._unsupported: Dict[bytes, Tuple[float, str]] = {}  # request -> (ask again after, the refusal)
        self._background: Dict[str, object] = {}  # name -> an object with close()

    def dump(self, request: bytes, layout: Layout, what: str, detail: Detail = NO_DETAIL) -> Tally:
        """The tally of one dump; raises DiagUnsupported, from memory while the last refusal is recent."""
        return self._ask(request, lambda: self.diag.dump(request, layout, what, detail))

    def records(self, request: bytes, layout: Layout, what: str, extract) -> list:
        """One record per socket of a (small) dump, see DiagSocket.records."""
        return self._ask(request, lambda: self.diag.records(request, layout, what, extract))

    def _ask(self, request: bytes, run):
        known = self._unsupported.get(request)
        if known is not None and self._clock() < known[0]:
            # A new exception each time: re-raising a kept one would chain every collection's frames (and all
            # their samples) onto its traceback, for ever.
            raise DiagUnsupported(known[1])
        try:
            return run()
        except DiagUnsupported as e:
            self._unsupported[request] = (self._clock() + self.recheck_unsupported, str(e))
            raise

    def background(self, name: str, make: Callable[[], object]):
        """The background object of that name, made by make() on first use: in the thread that asks, which is
        inside this context's network namespace during a collection."""
        found = self._background.get(name)
        if found is None:
            found = self._background[name] = make()
        return found

    def close(self) -> None:
        self.diag.close()
        for obj in self._background.values():
            obj.close()
        self._background.clear()


class Collector:
    """One unit of collection, enabled with --collector.<name>, timed and reported on its own."""

    name = ""
    help = ""

    def collect(self, ctx: Context, out: Samples) -> None:
        raise NotImplementedError

    def start(self, ctx: Context) -> None:
        """Called once when a plan is built, with the exporter's own namespace's context: a collector that counts
        between collections starts counting here (others need nothing)."""


def dump_or_none(ctx: Context, out: Samples, request: bytes, layout: Layout, family: str, protocol: str,
                 what: str, detail: Detail = NO_DETAIL) -> Optional[Tally]:
    """Dump and report the handler's availability; None (after saying so) when this kernel has no handler."""
    try:
        tally = ctx.dump(request, layout, what, detail)
    except DiagUnsupported:
        out.add(m.HANDLER_AVAILABLE, (family, protocol), 0)
        return None
    out.add(m.HANDLER_AVAILABLE, (family, protocol), 1)
    out.add(m.SOURCE_INFO, (family, protocol, "sock_diag"), 1)
    return tally


def dump_family(ctx: Context, out: Samples, collector: str, family: str, request, layouts) -> Optional[Tally]:
    """The one dump of a single-dump family (unix, netlink, packet): with SK_MEMINFO values when the collector is
    in memory.collectors. request(memory) makes the request; layouts are (without memory, with memory)."""
    memory = collector in ctx.options.memory
    return dump_or_none(ctx, out, request(memory), layouts[memory], family, "", f"{family} dump", ctx.options.detail)
