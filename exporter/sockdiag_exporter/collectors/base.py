"""What a collector is, what it writes into, and the emitters shared by the socket-family collectors."""

import socket
import time
from typing import Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Tuple

from prometheus_client.utils import floatToGoString

from .. import metrics as m
from ..diag.decoder import NO_DETAIL, Detail, Layout, Tally
from ..diag.errors import DiagUnsupported
from ..diag.netlink import DiagSocket
from .names import state_name


class Samples:
    """The samples one collector produced in one collection: metric -> [(label values, value)].

    A gauge histogram's value is ([(le, cumulative count)...] ending with +Inf, sum).
    """

    def __init__(self):
        self.by_metric: Dict[m.Metric, List[Tuple[tuple, object]]] = {}

    def add(self, metric: m.Metric, labels: tuple, value) -> None:
        self.by_metric.setdefault(metric, []).append((labels, value))


class Options(NamedTuple):
    """Collection settings that come from the configuration."""

    detail: Detail = NO_DETAIL  # histogram bounds and port-group lookup tables
    port_groups: Tuple[str, ...] = ()  # group names, in the bit order of detail.port_groups
    memory: FrozenSet[str] = frozenset()  # collectors that fetch SK_MEMINFO
    max_listeners: int = 100  # listeners reported one by one, per collector
    cgroups: Optional[object] = None  # a CgroupMap when cgroup attribution is on
    max_cgroups: int = 100


DEFAULT_OPTIONS = Options()


class Context:
    """What collectors read from: the diag socket of the namespace being collected, and the options.

    A dump the kernel has no handler for is not asked again for recheck_unsupported seconds: on kernels with
    loadable modules each such request makes the kernel try modprobe.
    """

    def __init__(self, diag: DiagSocket, recheck_unsupported: float = 300.0, options: Options = DEFAULT_OPTIONS,
                 clock=time.monotonic):
        self.diag = diag
        self.recheck_unsupported = recheck_unsupported
        self.options = options
        self._clock = clock
        self._unsupported: Dict[bytes, Tuple[float, str]] = {}  # request -> (ask again after, the refusal)

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


class Collector:
    """One unit of collection, enabled with --collector.<name>, timed and reported on its own."""

    name = ""
    help = ""

    def collect(self, ctx: Context, out: Samples) -> None:
        raise NotImplementedError


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


def emit_states(out: Samples, labels: tuple, counts: Dict[str, list], listen_state: Optional[str]) -> None:
    """Emit count, queue (and memory) series for each state name of one (family, socket_type, protocol).

    counts: state name -> [count, receive queue, send queue, memory values...]. The listener state's queues are
    accept-queue length and limit, never data: they go to the accept-queue metrics.
    """
    for state, row in counts.items():
        count, rq, wq = row[:3]
        out.add(m.SOCKETS, labels + (state,), count)
        if state == listen_state:
            out.add(m.ACCEPT_QUEUE_LENGTH, labels, rq)
            out.add(m.ACCEPT_QUEUE_LIMIT, labels, wq)
        else:
            out.add(m.RECEIVE_QUEUE, labels + (state,), rq)
            out.add(m.SEND_QUEUE, labels + (state,), wq)
        for metric, value in zip(m.MEMORY, row[3:]):
            out.add(metric, labels + (state,), value)


def by_state_name(rows, state_names: dict, width: int = 3) -> Dict[str, list]:
    """Fold (state number, [count, rq, wq, ...]) rows into state name -> sums of the first width values, with a
    zero row for every known state so that dashboards and alerts see no gaps."""
    counts = {name: [0] * width for name in state_names.values()}
    for state, row in rows:
        total = counts.setdefault(state_name(state_names, state), [0] * width)
        for i, value in enumerate(row[:width]):
            total[i] += value
    return counts


def emit_histograms(out: Samples, labels: tuple, hists: Iterable[list], bounds: Tuple[int, ...],
                    sums: Tuple[int, int]) -> None:
    """Sum per-key [receive buckets, send buckets] lists into the two gauge histograms of labels; sums are the
    receive and send queue totals of the same sockets (the histograms' _gsum)."""
    if not bounds:
        return
    totals = [[0] * (len(bounds) + 1), [0] * (len(bounds) + 1)]
    for hist in hists:
        for total, buckets in zip(totals, hist):
            for i, n in enumerate(buckets):
                total[i] += n
    les = [floatToGoString(b) for b in bounds] + ["+Inf"]
    for metric, buckets, total in zip(m.HISTOGRAMS, totals, sums):
        cumulative, running = [], 0
        for le, n in zip(les, buckets):
            running += n
            cumulative.append((le, running))
        out.add(metric, labels, (cumulative, total))


def emit_port_groups(out: Samples, ctx: Context, family: str, protocol: str, groups: dict, state_names: dict,
                     listen_state: Optional[str]) -> None:
    """Per port group: counts by state (zeros included) and queue sums of its data sockets."""
    names = ctx.options.port_groups
    for bit, group in enumerate(names):
        rows = [(key & 0xFF, row) for key, row in groups.items() if key >> 8 & (1 << bit)]
        for state, (count, rq, wq) in by_state_name(rows, state_names).items():
            labels = (group, family, protocol, state)
            out.add(m.PORT_GROUP_SOCKETS, labels, count)
            if state != listen_state:
                out.add(m.PORT_GROUP_RECEIVE_QUEUE, labels, rq)
                out.add(m.PORT_GROUP_SEND_QUEUE, labels, wq)


class Listener(NamedTuple):
    family: str
    socket_type: str
    protocol: str
    address: str
    length: int
    limit: int


def interface_address(address: str, ifindex: int) -> str:
    """Mark a listener bound to a device like ss does: 0.0.0.0%eth0:80."""
    if not ifindex:
        return address
    try:
        name = socket.if_indextoname(ifindex)
    except OSError:
        name = f"if{ifindex}"
    host, _, port = address.rpartition(":")
    return f"{host}%{name}:{port}"


def emit_listeners(out: Samples, listeners: List[Listener], cap: int, groups: Iterable[tuple]) -> None:
    """Per-listener queue series, at most cap of them (fullest first, then by address); the rest summed into
    address="other" of their (family, socket_type, protocol), with how many were folded.

    groups: every (family, socket_type, protocol) to report a folded count for, even 0.
    """
    merged: Dict[tuple, list] = {}
    for lst in listeners:
        row = merged.setdefault(lst[:4], [0, 0, 0])
        row[0] += 1
        row[1] += lst.length
        row[2] += lst.limit

    def fill(item):
        labels, (_, length, limit) = item
        ratio = length / limit if limit else (float("inf") if length else 0.0)
        return -ratio, labels

    ranked = sorted(merged.items(), key=fill)
    folded = {group: [0, 0, 0] for group in groups}
    for labels, (sockets, length, limit) in ranked[cap:]:
        row = folded.setdefault(labels[:3], [0, 0, 0])
        row[0] += sockets
        row[1] += length
        row[2] += limit
    for labels, (sockets, length, limit) in ranked[:cap]:
        _emit_listener(out, labels, sockets, length, limit)
    for group, (sockets, length, limit) in folded.items():
        out.add(m.LISTENERS_FOLDED, group, sockets)
        if sockets:
            _emit_listener(out, group + ("other",), sockets, length, limit)


def _emit_listener(out: Samples, labels: tuple, sockets: int, length: int, limit: int) -> None:
    out.add(m.LISTENER_QUEUE_LENGTH, labels, length)
    out.add(m.LISTENER_QUEUE_LIMIT, labels, limit)
    out.add(m.LISTENER_SOCKETS, labels, sockets)


def emit_cgroups(out: Samples, ctx: Context, family: str, protocol: str, cgroups: dict, state_names: dict,
                 listen_state: str) -> None:
    """Counts and data-queue sums per unit or container (states with sockets only), the largest first; beyond
    cgroups.max_series summed into cgroup="other"."""
    opts = ctx.options
    by_name: Dict[str, Dict[int, list]] = {}
    for key, (count, rq, wq) in cgroups.items():
        states = by_name.setdefault(opts.cgroups.name(key >> 8), {})
        row = states.setdefault(key & 0xFF, [0, 0, 0])
        row[0] += count
        row[1] += rq
        row[2] += wq
    ranked = sorted(by_name, key=lambda n: (-sum(r[0] for r in by_name[n].values()), n))
    merged: Dict[tuple, list] = {}
    for index, name in enumerate(ranked):
        label = name if index < opts.max_cgroups else "other"
        for state, row in by_name[name].items():
            total = merged.setdefault((label, state), [0, 0, 0])
            for i in range(3):
                total[i] += row[i]
    for (label, state), (count, rq, wq) in merged.items():
        state_label = state_name(state_names, state)
        labels = (label, family, protocol, state_label)
        out.add(m.CGROUP_SOCKETS, labels, count)
        if state_label != listen_state:
            out.add(m.CGROUP_RECEIVE_QUEUE, labels, rq)
            out.add(m.CGROUP_SEND_QUEUE, labels, wq)
