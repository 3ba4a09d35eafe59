"""Collection settings, built by the collectors layer from the configuration (one Options per configuration)."""

from typing import FrozenSet, NamedTuple, Optional, Tuple

from ..diag import constants as c
from ..diag.health import port_ranges
from ..diag.requests import MEMINFO_NAMES
from ..diag.tally import NO_DETAIL, Detail, port_tables


class PortGroup(NamedTuple):
    name: str
    local: FrozenSet[int]
    remote: FrozenSet[int]


class FlowOptions(NamedTuple):
    """What the flows collector and its per-namespace subscribers read from the configuration (flows.*)."""

    receive_buffer: int = 8 << 20
    rtt_bounds: Tuple[float, ...] = ()  # seconds
    max_listeners: int = 20


class HealthOptions(NamedTuple):
    """What the tcp_health collector reads from the configuration (tcp_health.*)."""

    rtt_bounds: Tuple[float, ...] = ()  # seconds
    groups: Tuple[int, ...] = ()  # bits of the port groups it is restricted to; empty: every connection
    ports: Tuple[Tuple[str, int, int], ...] = ()  # those groups' (or every group's) ports: (side, low, high) ranges
    flows: bool = False  # the flows collector runs: closed + live traffic counters


class Options(NamedTuple):
    """What collectors read from the configuration."""

    detail: Detail = NO_DETAIL  # what dumps tally beyond counts: histogram bounds, port-group tables, cgroup ids
    port_groups: Tuple[PortGroup, ...] = ()  # in the bit order of detail.port_groups
    memory: FrozenSet[str] = frozenset()  # collectors that fetch SK_MEMINFO
    max_listeners: int = 100  # listeners reported one by one, per collector
    cgroups: Optional[object] = None  # a CgroupMap when cgroup attribution is on
    max_cgroups: int = 100
    histograms: FrozenSet[str] = frozenset()  # collectors whose sockets get queue histograms (detail.bounds)
    memory_fields: Tuple[int, ...] = tuple(range(c.SK_MEMINFO_VARS))  # SK_MEMINFO values exported, by index
    full: bool = True  # the full profile: every known state of every family with zeros, every fact repeated
    flows: FlowOptions = FlowOptions()
    max_receivers: int = 50  # UDP receivers reported one by one, per collector
    destinations: int = 0  # busiest ephemeral-port destinations reported one by one, per family (0: none)
    ports_interval: float = 60.0  # seconds between ephemeral-port analyses (0: every collection)
    health: HealthOptions = HealthOptions()

    @classmethod
    def from_config(cls, config, cgroups=None) -> "Options":
        """config: a config.Config; cgroups: the CgroupMap when cgroup attribution is on."""
        groups = tuple(PortGroup(name, frozenset(g.local), frozenset(g.remote))
                       for name, g in config.port_groups.items())
        detail = Detail(
            config.histograms.buckets if config.histograms.enabled else (),
            port_tables([(g.local, g.remote) for g in groups]) if groups else None,
            c.INET_DIAG_CGROUP_ID if cgroups else 0,
        )
        flows = FlowOptions(config.flows.receive_buffer_bytes, config.flows.rtt_buckets, config.flows.max_listeners)
        return cls(detail, groups, frozenset(config.memory.collectors), config.listeners.max_series, cgroups,
                   config.cgroups.max_series, frozenset(config.histograms.collectors),
                   tuple(sorted(MEMINFO_NAMES.index(f) for f in config.memory.fields)), config.profile == "full",
                   flows, config.udp_receivers.max_series, config.ephemeral_ports.destinations,
                   config.ephemeral_ports.interval_seconds,
                   health=health_options(config, groups))

    def detail_for(self, collector: str) -> Detail:
        """What this collector's dumps tally: no histogram buckets unless it is in histograms.collectors (the
        decoders then skip bucketing altogether)."""
        return self.detail if collector in self.histograms else self.detail._replace(bounds=())


DEFAULT_OPTIONS = Options()


def health_options(config, groups: Tuple[PortGroup, ...]) -> HealthOptions:
    """tcp_health.* as HealthOptions; groups in the bit order of the port-group tables."""
    health = config.tcp_health
    names = [g.name for g in groups]
    bits = tuple(names.index(name) for name in health.port_groups)
    ports = []
    for bit in bits or range(len(groups)):
        for side in ("local", "remote"):
            ports.extend((side, low, high) for low, high in port_ranges(getattr(groups[bit], side)))
    return HealthOptions(health.rtt_buckets, bits, tuple(dict.fromkeys(ports)), bool(config.collectors.get("flows")))
