"""Collection settings, built by the collectors layer from the configuration (one Options per configuration)."""

from typing import FrozenSet, NamedTuple, Optional, Tuple

from ..diag import constants as c
from ..diag.tally import NO_DETAIL, Detail, port_tables


class PortGroup(NamedTuple):
    name: str
    local: FrozenSet[int]
    remote: FrozenSet[int]


class Options(NamedTuple):
    """What collectors read from the configuration."""

    detail: Detail = NO_DETAIL  # what dumps tally beyond counts: histogram bounds, port-group tables, cgroup ids
    port_groups: Tuple[PortGroup, ...] = ()  # in the bit order of detail.port_groups
    memory: FrozenSet[str] = frozenset()  # collectors that fetch SK_MEMINFO
    max_listeners: int = 100  # listeners reported one by one, per collector
    cgroups: Optional[object] = None  # a CgroupMap when cgroup attribution is on
    max_cgroups: int = 100
    max_receivers: int = 50  # UDP receivers reported one by one, per collector
    destinations: int = 0  # busiest ephemeral-port destinations reported one by one, per family (0: none)
    ports_interval: float = 60.0  # seconds between ephemeral-port analyses (0: every collection)

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
        return cls(detail, groups, frozenset(config.memory.collectors), config.listeners.max_series, cgroups,
                   config.cgroups.max_series, config.udp_receivers.max_series, config.ephemeral_ports.destinations,
                   config.ephemeral_ports.interval_seconds)


DEFAULT_OPTIONS = Options()
