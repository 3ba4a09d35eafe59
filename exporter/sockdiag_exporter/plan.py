"""The collection plan: everything a collection reads from the configuration, in one immutable object.

A plan is built once per configuration. A reload builds a new one and swaps it in with one assignment
(Scraper.swap); a collection takes the plan once, at its start, so it never mixes two configurations. A plan owns
its diag sockets and background subscribers (through each namespace's Context): they are closed when the last
collection using the plan ends (PlanHolder).
"""

import threading
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

from .cgroups import cgroup_map
from .collectors.base import Collector, Context
from .collectors.options import Options
from .diag.netlink import DiagSocket, DiagStats
from .config import MAX_AUTO_WORKERS
from .namespaces import NamespaceSet
from .workers import WorkerPool, usable_cpus


class Plan(NamedTuple):
    collectors: Tuple[Collector, ...]
    own: Context  # the exporter's own network namespace
    namespaces: Optional[NamespaceSet]  # None: the own namespace only, and no netns label
    features: Mapping[str, bool]  # configured optional features -> on
    series_budget: int  # 0: none
    sparse: bool  # other namespaces without zero-valued series (namespaces.sparse)
    config_file: str  # where the configuration came from ("" for defaults and flags only)
    workers: WorkerPool  # the threads that collect

    def close(self) -> None:
        self.workers.close()
        self.own.close()
        if self.namespaces is not None:
            self.namespaces.close()


def build_plan(config, stats: DiagStats, config_file: str = "") -> Plan:
    """The plan for a config.Config; stats counts every plan's dumps for the life of the process."""
    cgroups = cgroup_map(config.cgroups)
    options = Options.from_config(config, cgroups)
    nl = config.netlink
    cpus = usable_cpus()
    workers = config.collection.workers or min(cpus, MAX_AUTO_WORKERS)
    ns = config.namespaces
    pool = WorkerPool(workers, ns.enabled)
    # A receiving thread per dump pays only where a core would otherwise idle: with a worker per core the workers'
    # dumps already keep them busy, and the threads' hand-overs cost more than the overlap gave (2 cores, 100k
    # sockets: ctxsw 420 -> 232 a collection, CPU 0.158 -> 0.153 s, same wall time).
    pipelined = 1 < workers <= cpus // 2

    def context(share: bool = workers > 1) -> Context:
        def diag() -> DiagSocket:
            return DiagSocket(nl.receive_buffer_bytes, nl.timeout_seconds, nl.dump_retries, stats,
                              pipelined=share and pipelined)

        return Context(diag, nl.recheck_unsupported_seconds, options, share=pool.share if share else None)

    try:  # the pool's namespace file is closed if the plan cannot be built
        # With namespaces the workers collect several namespaces at once; a collector's own parallel dumps, and a
        # receiving thread per dump, on top of that cost more than they gave (100 namespaces of 1,000 sockets, when
        # those dumps were threads of their own: 0.67 s a collection with both, 0.53 without the former, 0.41
        # without either), so their contexts do not share.
        namespaces = NamespaceSet(ns.named, ns.processes, ns.include, ns.exclude, ns.max_namespaces,
                                  lambda: context(False)) if ns.enabled else None
        features: Dict[str, bool] = dict(namespaces.enabled) if namespaces else {}
        if config.cgroups.enabled:
            features["cgroup_attribution"] = cgroups is not None
        collectors, own = tuple(config.enabled_collectors()), context()
        # Background counting starts now in the exporter's own namespace (whose context, with namespaces, is the
        # set's), in the others at their first collection.
        counting = namespaces.context(namespaces.own) if namespaces else own
        for col in collectors:
            col.start(counting)
        return Plan(collectors, own, namespaces, features, config.series_budget, ns.sparse, config_file, pool)
    except BaseException:
        pool.close()
        raise


class PlanHolder:
    """The current plan, and the retired ones until their last collection ends (then their sockets close)."""

    def __init__(self, plan: Plan):
        self._lock = threading.Lock()
        self._current = plan
        self._users: Dict[int, int] = {}  # id(plan) -> collections using it

    @property
    def current(self) -> Plan:
        return self._current

    def swap(self, plan: Plan) -> None:
        with self._lock:
            old, self._current = self._current, plan
            idle = not self._users.get(id(old))
        if idle:
            old.close()

    def take(self) -> Plan:
        with self._lock:
            plan = self._current
            self._users[id(plan)] = self._users.get(id(plan), 0) + 1
            return plan

    def give_back(self, plan: Plan) -> None:
        with self._lock:
            left = self._users[id(plan)] - 1
            if left:
                self._users[id(plan)] = left
            else:
                del self._users[id(plan)]
            retired = not left and plan is not self._current
        if retired:
            plan.close()

    def close(self) -> None:
        """At shutdown: close the current plan's sockets."""
        self._current.close()
