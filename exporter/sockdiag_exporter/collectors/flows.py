"""Connection flows: TCP connections and UDP sockets closed, from the sock_diag destroy events of each namespace.

Each collected network namespace has its own subscriber (diag/events.py), opened inside it (at plan build for the
exporter's own, at its first collection for the others) and closed with its Context. A background thread decodes
the events into counters between collections; a collection refreshes the listening ports that decide inbound
against outbound (a dump of TCP listeners) and turns a copy of the counters into samples.

Listening addresses get their own series first come, first served, up to flows.max_listeners per namespace; later
ones are counted as address="other". A slot, once given, is kept: a counter never moves to another series.
"""

import logging
from typing import Dict, List, Tuple

from prometheus_client.utils import floatToGoString

from .. import metrics as m
from ..diag import constants as c
from ..diag import requests
from ..diag.errors import DiagError
from ..diag.events import Subscriber
from ..diag.flows import INET6, FlowDecoder, FlowTally
from . import names
from .base import Collector, Context, Samples
from .listeners import interface_address
from .options import Options

log = logging.getLogger(__name__)

FAMILIES = ((0, c.AF_INET, "inet"), (INET6, c.AF_INET6, "inet6"))


class ListenerSlots:
    """The address labels of listening ports' series: first come, first served, up to max_listeners of their own,
    later ones "other"; a slot, once given, is kept (a counter never moves to another series)."""

    def __init__(self, max_listeners: int):
        self.max_listeners = max_listeners
        self.addresses: Dict[Tuple[int, int], str] = {}  # (family index, port) -> listening address, latest seen
        self.slots: Dict[Tuple[int, int], str] = {}  # (family index, port) -> its address label, once given
        self.own_slots = 0  # slots with an address of their own (not "other")

    def slot(self, family: int, port: int) -> str:
        """The address label of a listening port's connections: its own while there is room, else "other"."""
        label = self.slots.get((family, port))
        if label is None:
            if self.own_slots < self.max_listeners:
                label = self.addresses.get((family, port), f":{port}")
                self.own_slots += 1
            else:
                label = "other"
            self.slots[(family, port)] = label
        return label


class FlowState(ListenerSlots):
    """One namespace's subscriber, and what the collector remembers there: listener addresses and their series."""

    def __init__(self, options: Options):
        flows = options.flows
        super().__init__(flows.max_listeners)
        decoder = FlowDecoder(tuple(round(b * 1e6) for b in flows.rtt_bounds), options.detail.port_groups)
        self.subscriber = Subscriber(decoder, flows.receive_buffer)
        self.error = ""  # why the subscriber could not start
        self.logged = ("", 0, False)  # error, overruns, buffer warning: what the log said last

    def start(self) -> "FlowState":
        """Start (or start again) the subscriber in the calling thread's namespace; the counters carry on."""
        try:
            self.subscriber.start()
            self.error = ""
        except DiagError as e:
            self.error = str(e)
        except OSError as e:  # no file descriptor or thread left for it
            self.error = f"starting the destroy event subscriber: {e.strerror or e}"
        return self

    def close(self) -> None:
        self.subscriber.close()


def flow_state(ctx: Context) -> FlowState:
    """The namespace's subscriber and listener slots, started on first use."""
    return ctx.background("flows", lambda: FlowState(ctx.options).start())


class FlowsCollector(Collector):
    name = "flows"
    help = "TCP connections and UDP sockets closed, by direction and outcome, from sock_diag destroy events"

    def start(self, ctx: Context) -> None:
        state = flow_state(ctx)
        try:
            self._listeners(ctx, state)
        except DiagError as e:  # the first collection dumps them again and says so
            log.debug("flows: no listener dump at start: %s", e)

    def collect(self, ctx: Context, out: Samples) -> None:
        state = flow_state(ctx)
        subscriber = state.subscriber
        if not subscriber.running:  # refused before (asked again), or its thread stopped (a bug: restarted)
            state.start()
        self._report(state, ctx.options)
        out.add(m.FLOW_SUBSCRIBER_UP, (), 1 if subscriber.running else 0)
        if not subscriber.running:
            return
        self._listeners(ctx, state)
        tally = subscriber.snapshot()
        out.add(m.FLOW_EVENTS, (), tally.events)
        out.add(m.FLOW_OVERRUNS, (), subscriber.stats.overruns)
        if tally.malformed:
            out.add(m.FLOW_MALFORMED, (), tally.malformed)
        self._connections(out, tally, ctx.options)
        self._by_listener(out, tally, state)
        self._port_groups(out, tally, ctx.options)
        for family, _, name in FAMILIES:
            if tally.udp[family]:
                out.add(m.UDP_CLOSED, (name,), tally.udp[family])

    def _report(self, state: FlowState, options: Options) -> None:
        """Log a subscriber that does not run, lost events and a capped receive buffer: once per change."""
        subscriber = state.subscriber
        error = state.error or subscriber.stats.error
        overruns = subscriber.stats.overruns
        capped = subscriber.running and subscriber.effective_buffer < options.flows.receive_buffer
        last_error, last_overruns, last_capped = state.logged
        extra = {"COLLECTOR": self.name}
        if error and error != last_error:
            log.warning("flows: no destroy events from this network namespace: %s", error,
                        extra=dict(extra, ERROR=error))
        elif not error and last_error:
            log.info("flows: receiving destroy events again", extra=extra)
        if overruns != last_overruns:
            log.warning("flows: the kernel dropped destroy events (%d overruns so far): connections were missed; "
                        "raise flows.receive_buffer_bytes", overruns, extra=extra)
        if capped and not last_capped:
            log.warning("flows: receive buffer of %d bytes instead of flows.receive_buffer_bytes %d: without "
                        "CAP_NET_ADMIN it is capped by net.core.rmem_max", subscriber.effective_buffer,
                        options.flows.receive_buffer, extra=extra)
        state.logged = (error, overruns, capped or last_capped)

    @staticmethod
    def _listeners(ctx: Context, state: FlowState) -> None:
        """The listening TCP ports of the namespace from now on (inbound or outbound), and their addresses."""
        state.subscriber.decoder.listen(listening_ports(ctx, state, "flows"))

    @staticmethod
    def _connections(out: Samples, tally: FlowTally, options: Options) -> None:
        """Connections by family, direction and outcome; the sums by family and direction; RTT by direction."""
        sums: Dict[tuple, list] = {}
        for key, row in tally.connections():
            labels = (names.FLOW_FAMILIES[key.family], names.FLOW_DIRECTIONS[key.direction])
            out.add(m.TCP_CLOSED, labels + (names.FLOW_OUTCOMES[key.outcome],), row[0])
            _add(sums, labels, row[1:])
        for labels, total in sorted(sums.items()):
            for metric, value in zip(m.TCP_CLOSED_SUMS, total):
                out.add(metric, labels, value)
        les = [floatToGoString(b) for b in options.flows.rtt_bounds] + ["+Inf"]
        for direction, name in enumerate(names.FLOW_DIRECTIONS):
            buckets, total_us = tally.rtt_histogram(direction)
            if not options.flows.rtt_bounds or not sum(buckets):
                continue
            cumulative, running = [], 0
            for le, n in zip(les, buckets):
                running += n
                cumulative.append((le, running))
            out.add(m.TCP_CLOSED_RTT, (name,), (cumulative, total_us / 1e6))

    @staticmethod
    def _by_listener(out: Samples, tally: FlowTally, state: FlowState) -> None:
        rows = [((names.FLOW_FAMILIES[key.family], state.slot(key.family, port)), key, row)
                for key, port, row in sorted(tally.by_listener(), key=lambda item: (item[1], item[0]))]
        _emit_split(out, rows, m.LISTENER_TCP_CLOSED, m.LISTENER_TCP_CLOSED_BYTES)

    @staticmethod
    def _port_groups(out: Samples, tally: FlowTally, options: Options) -> None:
        for bit, group in enumerate(options.port_groups):
            rows = [((group.name, names.FLOW_FAMILIES[key.family], names.FLOW_DIRECTIONS[key.direction]), key, row)
                    for key, row in tally.in_group(bit)]
            _emit_split(out, rows, m.PORT_GROUP_TCP_CLOSED, m.PORT_GROUP_TCP_CLOSED_BYTES)


def listening_ports(ctx: Context, slots: ListenerSlots, user: str) -> List[Tuple[int, int]]:
    """(family index, port) of the namespace's listening TCP sockets, their addresses noted in slots."""
    ports = []
    for family, number, _ in FAMILIES:
        # The tcp collector's very request (with SK_MEMINFO, for its drops: a few bytes per listener), so that one
        # recorded reply serves all three in replays (tests/golden/kernel.json).
        found = ctx.records(requests.inet(number, c.IPPROTO_TCP, requests.LISTEN_STATES, True), requests.INET_LAYOUT,
                            f"{names.FLOW_FAMILIES[family]} tcp listener dump ({user})", requests.inet_listener)
        for rec in found:
            ports.append((family, rec.port))
            slots.addresses[(family, rec.port)] = interface_address(rec.address, rec.ifindex)
    return ports


def _add(table: dict, labels: tuple, values) -> None:
    total = table.setdefault(labels, [0] * len(values))
    for i, value in enumerate(values):
        total[i] += value


def _emit_split(out: Samples, rows, closed: m.Metric, volumes: Tuple[m.Metric, m.Metric]) -> None:
    """(labels, key, [connections, sent, received]) rows as connections by labels and outcome, and the bytes by
    labels (several ports may share one label: "other")."""
    counts: Dict[tuple, list] = {}
    sums: Dict[tuple, list] = {}
    for labels, key, row in rows:
        _add(counts, labels + (names.FLOW_OUTCOMES[key.outcome],), row[:1])
        _add(sums, labels, row[1:3])
    for labels, (count,) in sorted(counts.items()):
        out.add(closed, labels, count)
    for labels, total in sorted(sums.items()):
        for metric, value in zip(volumes, total):
            out.add(metric, labels, value)


COLLECTORS = (FlowsCollector(),)
