"""What a collector is, what it reads from (Context) and what it writes into (Samples)."""

import threading
import time
from functools import partial
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
    """What collectors read from in one network namespace: its diag sockets, its /proc/net, the options, the
    background objects collectors keep there (a destroy-event subscriber), closed with it, and what they keep there
    from one collection to the next (kept: name -> value, e.g. the last ephemeral-port analysis).

    Dumps may run at once (parallel collection, and a collector's own parallel dumps through share, a
    WorkerPool.share, or None for one after another): each takes a diag socket of its own from a small pool that
    grows to the most dumps run at once in this namespace. Sockets open in the calling thread's network namespace,
    which is this context's by construction.

    A dump the kernel has no handler for is not asked again for recheck_unsupported seconds: on kernels with
    loadable modules each such request makes the kernel try modprobe.
    """

    def __init__(self, make_diag: Callable[[], DiagSocket], recheck_unsupported: float = 300.0,
                 options: Options = DEFAULT_OPTIONS, proc: Optional[ProcNet] = None, clock=time.monotonic,
                 share: Optional[Callable[[list], list]] = None):
        self.make_diag = make_diag
        self.proc = proc or ProcNet()
        self.recheck_unsupported = recheck_unsupported
        self.options = options
        self.share = share
        self._clock = clock
        self._unsupported: Dict[bytes, Tuple[float, str]] = {}  # request -> (ask again after, the refusal)
        self._lock = threading.Lock()
        self._idle: List[DiagSocket] = []
        self._all: List[DiagSocket] = []
        self._background: Dict[str, object] = {}  # name -> an object with close()
        self.kept: Dict[str, object] = {}  # one collector's own key each: collectors may run at once
        self._shared: Optional[Dict[tuple, "_Once"]] = None  # records asked for in this collection (once begun)

    def now(self) -> float:
        """Monotonic seconds, from the context's clock."""
        return self._clock()

    def dump(self, request: bytes, layout: Layout, what: str, detail: Detail = NO_DETAIL) -> Tally:
        """The tally of one dump; raises DiagUnsupported, from memory while the last refusal is recent."""
        return self._ask(request, lambda diag: diag.dump(request, layout, what, detail))

    def begin(self) -> None:
        """A collection starts here: what the last one shared (records) is forgotten."""
        with self._lock:
            self._shared = {}

    def records(self, request: bytes, layout: Layout, what: str, extract) -> list:
        """One record per socket of a (small) dump, see DiagSocket.records. Collectors that ask for the very same
        records in one collection (tcp's listener dump and flows') share one dump: with 100 namespaces of 1,000
        sockets the second one was 14% of the collection's Python time. A failed dump is not shared: the next
        caller asks itself (and gets an exception of its own)."""
        def dump() -> list:
            return self._ask(request, lambda diag: diag.records(request, layout, what, extract))

        if self._shared is None:  # used outside a collection (tests, tools): nothing is shared
            return dump()
        key = (request, layout, extract)
        with self._lock:
            once = self._shared.get(key)
            first = once is None
            if first:
                once = self._shared[key] = _Once()
        if not first:
            once.done.wait()
            if once.ok:
                return once.value
        try:
            once.value = dump()
            once.ok = True
            return once.value
        finally:
            once.done.set()

    def decode(self, request: bytes, what: str, make_decoder):
        """One dump through a decoder of the caller's (make_decoder(seq)), see DiagSocket.decode."""
        return self._ask(request, lambda diag: diag.decode(request, what, make_decoder))

    def each(self, fn, items) -> list:
        """[fn(item) for item in items], at once on the collection's idle workers when parallel dumps are on
        (WorkerPool.share: in this context's namespace); the first exception raised is raised."""
        items = list(items)
        if self.share is None:
            return [fn(item) for item in items]
        results = self.share([partial(fn, item) for item in items])
        for ok, value in results:
            if not ok:
                raise value
        return [value for _, value in results]

    def _ask(self, request: bytes, run):
        known = self._unsupported.get(request)
        if known is not None and self._clock() < known[0]:
            # A new exception each time: re-raising a kept one would chain every collection's frames (and all
            # their samples) onto its traceback, for ever.
            raise DiagUnsupported(known[1])
        with self._lock:
            if self._idle:
                diag = self._idle.pop()
            else:
                diag = self.make_diag()
                self._all.append(diag)
        try:
            return run(diag)
        except DiagUnsupported as e:
            self._unsupported[request] = (self._clock() + self.recheck_unsupported, str(e))
            raise
        finally:
            with self._lock:
                self._idle.append(diag)

    def background(self, name: str, make: Callable[[], object]):
        """The background object of that name, made by make() on first use: in the thread that asks, which is
        inside this context's network namespace during a collection."""
        with self._lock:  # collectors of one namespace may run at once
            found = self._background.get(name)
            if found is None:
                found = self._background[name] = make()
            return found

    def close(self) -> None:
        with self._lock:
            for diag in self._all:
                diag.close()
            for obj in self._background.values():
                obj.close()
            self._background.clear()


class _Once:
    """One shared dump's records: ok once they are there, done once its first caller finished (or failed)."""

    __slots__ = ("done", "ok", "value")

    def __init__(self):
        self.done = threading.Event()
        self.ok = False
        self.value = None


class Collector:
    """One unit of collection, enabled with --collector.<name>, timed and reported on its own."""

    name = ""
    help = ""
    weight = 1  # how long it takes, roughly, against the others: the heaviest start first when collecting at once

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
    if ctx.options.full:  # what goes without saying is left out of the default profile: a handler, its source
        out.add(m.HANDLER_AVAILABLE, (family, protocol), 1)
        out.add(m.SOURCE_INFO, (family, protocol, "sock_diag"), 1)
    return tally


def dump_family(ctx: Context, out: Samples, collector: str, family: str, request, layouts) -> Optional[Tally]:
    """The one dump of a single-dump family (unix, netlink, packet): with SK_MEMINFO values when the collector is
    in memory.collectors. request(memory) makes the request; layouts are (without memory, with memory)."""
    memory = collector in ctx.options.memory
    return dump_or_none(ctx, out, request(memory), layouts[memory], family, "", f"{family} dump",
                        ctx.options.detail_for(collector))
