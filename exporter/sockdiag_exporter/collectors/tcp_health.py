"""Live TCP health (tcp_health.enabled): RTT, retransmissions and what limits throughput, per listening address
(inbound connections) and per port group, from the tcp_info of connected TCP sockets (diag/health.py).

Per-service traffic counters, with the flows collector on: bytes sent and received = the closed connections'
totals (the destroy events, flows) + the live connections' tcpi_bytes_acked / tcpi_bytes_received. The flows
counters are read *before* the live dump: a connection that closes in between is then counted in neither for a
moment (never twice), until its event is read. A series is held at its last value when it would go down (such a
moment, or a lost event), and each such hold is counted in sockdiag_tcp_traffic_clamped_total.
"""

import threading
from typing import Dict, List, Tuple

from prometheus_client.utils import floatToGoString

from .. import metrics as m
from ..diag import health
from ..diag.flows import listening_table
from ..diag.health import COL, SUMS, HealthDecoder, HealthTally
from . import names
from .base import Collector, Context, Samples
from .flows import FAMILIES, FlowState, ListenerSlots, flow_state, listening_ports

# (metric index in m.*_HEALTH, row column, scale): the sums in the order of metrics._HEALTH + _HEALTH_COUNTS.
_SUM_COLUMNS = (("total_retrans", 1), ("retrans", 1), ("lost", 1), ("unacked", 1), ("notsent_bytes", 1),
                ("busy_time_us", 1e-6), ("rwnd_limited_us", 1e-6), ("sndbuf_limited_us", 1e-6), ("segs_out", 1),
                ("in_recovery", 1), ("zero_window", 1))


class HealthState:
    """What the collector keeps in a namespace: its listener slots when flows is off, and the traffic counters'
    last values (the clamp)."""

    def __init__(self, max_listeners: int):
        self.slots = ListenerSlots(max_listeners)
        self.last: Dict[tuple, int] = {}  # (metric name, labels) -> last value served
        self.clamped = 0
        self.lock = threading.Lock()  # collections of one namespace may overlap

    def close(self) -> None:
        pass


class TcpHealthCollector(Collector):
    name = "tcp_health"
    help = "Live TCP health per listener and port group from the tcp_info of connected TCP sockets (opt-in)"
    weight = 3

    def collect(self, ctx: Context, out: Samples) -> None:
        opts = ctx.options.health
        state = ctx.background("tcp_health", lambda: HealthState(ctx.options.flows.max_listeners))
        flows = flow_state(ctx) if opts.flows else None
        slots = flows if flows is not None else state.slots
        closed = flows.subscriber.snapshot() if flows is not None and flows.subscriber.running else None
        listening, ranges = dump_scope(ctx, slots)
        bounds = tuple(round(b * 1e6) for b in opts.rtt_bounds)
        groups = ctx.options.detail.port_groups
        ports = ranges if len(ranges) <= health.MAX_FILTER_RANGES else ()
        tallies = ctx.each(lambda fam: ctx.decode(
            health.request(fam[1], ports), f"{fam[2]} tcp health dump",
            lambda seq: HealthDecoder(seq, f"{fam[2]} tcp health dump", bounds, listening, groups,
                                      opts.groups)).tally,
            FAMILIES) if ranges else []  # no listener and no port group: nothing to count, nothing to ask
        out.add(m.HEALTH_SOCKETS, (), sum(t.sockets for t in tallies))
        listeners = _by_listener(tallies, slots)
        port_groups = _by_group(tallies, ctx.options, opts.groups)
        _emit(out, listeners, m.LISTENER_HEALTH_RTT, m.LISTENER_HEALTH, opts.rtt_bounds)
        _emit(out, port_groups, m.PORT_GROUP_HEALTH_RTT, m.PORT_GROUP_HEALTH, opts.rtt_bounds)
        if closed is None:
            return
        with state.lock:
            if not opts.groups:  # restricted to port groups, the live side would lack the listeners' other connections
                _traffic(out, state, _closed_by_listener(closed, flows, listeners), m.LISTENER_TRAFFIC)
            _traffic(out, state, _closed_by_group(closed, ctx.options, opts.groups, port_groups), m.PORT_GROUP_TRAFFIC)
            out.add(m.TRAFFIC_CLAMPED, (), state.clamped)


def dump_scope(ctx: Context, slots: ListenerSlots):
    """(listening table, port ranges of the dump's filter): the listening ports (inbound connections) and the port
    groups' ports, or only the configured groups' ports when tcp_health.port_groups restricts it. The kernel then
    fills tcp_info only for connections that count (an outbound connection outside every group counts nowhere)."""
    opts = ctx.options.health
    ports = listening_ports(ctx, slots, "tcp_health")
    return listening_table(ports), health.scope(() if opts.groups else (p for _, p in ports), opts.ports)


def _merge(table: Dict[tuple, List[int]], labels: tuple, row: List[int]) -> None:
    total = table.get(labels)
    if total is None:
        table[labels] = list(row)
    else:
        for i, value in enumerate(row):
            total[i] += value


def _by_listener(tallies: List[HealthTally], slots: ListenerSlots) -> Dict[tuple, List[int]]:
    rows: Dict[tuple, List[int]] = {}
    for tally in tallies:
        for family, port, row in sorted(tally.by_listener(), key=lambda item: (item[1], item[0])):
            _merge(rows, (names.FLOW_FAMILIES[family], slots.slot(family, port)), row)
    return rows


def _by_group(tallies: List[HealthTally], options, only: Tuple[int, ...]) -> Dict[tuple, List[int]]:
    rows: Dict[tuple, List[int]] = {}
    for bit, group in enumerate(options.port_groups):
        if only and bit not in only:
            continue
        for tally in tallies:
            for key, row in tally.in_group(bit):
                _merge(rows, (group.name, names.FLOW_FAMILIES[key.family], names.FLOW_DIRECTIONS[key.direction]),
                       row)
    return rows


def _emit(out: Samples, rows: Dict[tuple, List[int]], rtt_metrics, sum_metrics, rtt_bounds) -> None:
    les = [floatToGoString(b) for b in rtt_bounds] + ["+Inf"]
    n = len(les)
    for labels, row in sorted(rows.items()):
        if not row[COL["connections"]]:
            continue  # only closing connections (their bytes count in the traffic counters)
        base = len(SUMS)
        for metric, buckets, total in ((rtt_metrics[0], row[base : base + n], row[COL["rtt_us"]]),
                                       (rtt_metrics[1], row[base + n : base + 2 * n], row[COL["min_rtt_us"]])):
            cumulative, running = [], 0
            for le, count in zip(les, buckets):
                running += count
                cumulative.append((le, running))
            out.add(metric, labels, (cumulative, total / 1e6))
        for metric, (column, scale) in zip(sum_metrics, _SUM_COLUMNS):
            value = row[COL[column]]
            out.add(metric, labels, value * scale if scale != 1 else value)


def _closed_by_listener(closed, slots: FlowState, live: Dict[tuple, List[int]]) -> Dict[tuple, List[int]]:
    """labels -> [sent, received]: closed inbound connections' bytes plus the live ones'."""
    totals: Dict[tuple, List[int]] = {}
    for key, port, row in closed.by_listener():
        _merge(totals, (names.FLOW_FAMILIES[key.family], slots.slot(key.family, port)), row[1:3])
    for labels, row in live.items():
        _merge(totals, labels, [row[COL["bytes_acked"]], row[COL["bytes_received"]]])
    return totals


def _closed_by_group(closed, options, only: Tuple[int, ...], live: Dict[tuple, List[int]]) -> Dict[tuple, List[int]]:
    totals: Dict[tuple, List[int]] = {}
    for bit, group in enumerate(options.port_groups):
        if only and bit not in only:
            continue
        for key, row in closed.in_group(bit):
            _merge(totals, (group.name, names.FLOW_FAMILIES[key.family], names.FLOW_DIRECTIONS[key.direction]),
                   row[1:3])
    for labels, row in live.items():
        _merge(totals, labels, [row[COL["bytes_acked"]], row[COL["bytes_received"]]])
    return totals


def _traffic(out: Samples, state: HealthState, totals: Dict[tuple, List[int]], metrics) -> None:
    """The counters, each held at its last value if it would go down (counted)."""
    for labels, values in sorted(totals.items()):
        for metric, value in zip(metrics, values):
            key = (metric.name, labels)
            last = state.last.get(key, 0)
            if value < last:
                value = last
                state.clamped += 1
            state.last[key] = value
            out.add(metric, labels, value)


COLLECTORS = (TcpHealthCollector(),)
