"""One collection: run the plan's collectors (in every planned network namespace), time them, keep a failing one's
error to itself, fold and budget series; the result is a Collection, rendered by the registry adapter."""

import logging
import os
import platform
import time
from functools import partial
from typing import Dict, List, NamedTuple, Optional, Tuple

from prometheus_client.core import (CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily,
                                   HistogramMetricFamily)

from . import __version__
from . import metrics as m
from .collectors.base import Collector, Context, Samples
from .collectors.listeners import near_limit
from .containers import owner, process_cgroup
from .diag.errors import DiagError
from .diag.netlink import DiagStats
from .namespaces import CannotEnter, NamespaceGone, NamespaceSet, open_door
from .plan import Plan, PlanHolder
from .singleflight import SingleFlight
from .workers import EnterError, WorkerPool

log = logging.getLogger(__name__)

IN_NETNS = " in netns "  # collector name + this + namespace label names a collector's run in another namespace


class Collection(NamedTuple):
    """What one collection found: every metric's samples, and how each collector fared."""

    samples: Dict[m.Metric, list]
    namespaced: bool  # samples carry a netns label first
    finished: float  # wall-clock time at the end
    duration: float  # seconds
    errors: Dict[str, str]  # failing collector (in a namespace: "<collector> in netns <name>") -> its error
    plan: Plan

    @property
    def sockets(self) -> int:
        return int(sum(v for _, v in self.samples.get(m.SOCKETS, ())))

    def families(self) -> List:
        """prometheus_client metric families of every metric, in the order of metrics.ALL."""
        return [_family(metric, self.samples[metric], self.namespaced) for metric in m.ALL if metric in self.samples]


class Scraper:
    """Runs the current plan's collectors; a failing collector loses only its own metrics.

    Concurrent callers of collect() share the collection in flight. The counters of the exporter itself (dumps,
    retries) and the memory of logged errors live here, outside the plan, so they survive reloads.
    """

    def __init__(self, plan: Plan, stats: DiagStats):
        self.plans = PlanHolder(plan)
        self.stats = stats
        self.last: Optional[Collection] = None
        self.collecting_since: Optional[float] = None  # monotonic start of the collection in flight
        self._last_error: Dict[str, Optional[str]] = {}
        self._last_dropped: tuple = ()
        self.collect = SingleFlight(self._collect)

    @property
    def plan(self) -> Plan:
        return self.plans.current

    def swap(self, plan: Plan) -> None:
        """Use plan from the next collection on (one in flight finishes with its own)."""
        self.plans.swap(plan)

    def close(self) -> None:
        self.plans.close()

    def _collect(self) -> Collection:
        started = self.collecting_since = time.monotonic()
        plan = self.plans.take()
        try:
            collection = self._run_plan(plan, started)
        finally:
            self.plans.give_back(plan)
            self.collecting_since = None
        self.last = collection
        return collection

    def _run_plan(self, plan: Plan, started: float) -> Collection:
        merged: Dict[m.Metric, list] = {}
        durations = {col.name: 0.0 for col in plan.collectors}
        errors: Dict[str, str] = {}
        if plan.namespaces is None:
            (samples, _, _), = self._run_targets(plan, [(None, plan.own, "", False)], durations, errors)
            merged.update(samples)
        else:
            self._collect_namespaces(merged, plan, durations, errors)
        merged[m.NETLINK_DUMPS] = [((), self.stats.dumps)]
        merged[m.NETLINK_DUMP_RETRIES] = [((), self.stats.retries)]
        if plan.features:
            merged[m.FEATURE_ENABLED] = [((feature,), int(on)) for feature, on in plan.features.items()]
        failed = {name.partition(IN_NETNS)[0] for name in errors}
        merged[m.COLLECTOR_DURATION] = [((name,), t) for name, t in durations.items()]
        merged[m.COLLECTOR_SUCCESS] = [((name,), 0 if name in failed else 1) for name in durations]
        merged[m.COLLECTION_DURATION] = [((), time.monotonic() - started)]
        merged[m.BUILD_INFO] = [((__version__, platform.python_version()), 1)]
        if plan.series_budget:
            dropped = self._apply_budget(merged, plan.series_budget)
            merged[m.SERIES_DROPPED] = [((name,), n) for name, n in dropped.items()]
        return Collection(merged, plan.namespaces is not None, time.time(), time.monotonic() - started, errors, plan)

    def _run_targets(self, plan: Plan, targets, durations, errors) -> List[tuple]:
        """Run every collector in every target (door, context, where, sparse) on the plan's workers, the biggest
        pieces first; per target, in the plan's order: (its samples, whether every collector succeeded, the
        EnterError if the workers could not enter its namespace).

        sparse (every namespace but the exporter's own): zero-valued series and the kernel-wide facts (handler
        availability, data source) are left out, so that a hundred pods do not make a hundred copies of them.
        """
        for _, ctx, _, _ in targets:
            ctx.begin()
        n = len(plan.collectors)
        if len(targets) > plan.workers.size:
            # Namespaces enough to keep every worker busy: one task each (every collector in turn), a setns and a
            # task object per namespace instead of per collector (100 namespaces: 1,600 tasks a collection).
            done = plan.workers.run([(door, partial(_every, plan.collectors, ctx)) for door, ctx, _, _ in targets])
            outcome = {t * n + c: value[c] if ok else (False, value)
                       for t, (ok, value) in enumerate(done) for c in range(n)}
        else:  # a few targets: collector by collector, the biggest pieces first
            tasks = [(target, col) for target in targets for col in plan.collectors]
            order = sorted(range(len(tasks)), key=lambda i: tasks[i][1].weight, reverse=True)
            done = plan.workers.run([(tasks[i][0][0], partial(_timed, tasks[i][1], tasks[i][0][1])) for i in order])
            outcome = dict(zip(order, done))
        results = []
        for t, (_, _, where, sparse) in enumerate(targets):
            merged: Dict[m.Metric, list] = {}
            ok_all, refused = True, None
            for c, col in enumerate(plan.collectors):
                ok, value = outcome[t * len(plan.collectors) + c]
                if not ok:
                    ok_all = False
                    if isinstance(value, EnterError):  # not the collector's fault: the namespace's
                        refused = value
                    else:
                        self._failure(col, where, value, errors)
                    continue
                out, elapsed = value
                durations[col.name] += elapsed
                self._succeeded(col, where)
                for metric, samples in out.by_metric.items():
                    if sparse:
                        if metric in m.NOT_ADDITIVE:
                            continue
                        samples = [(labels, v) for labels, v in samples
                                   if metric in m.KEEP_ZERO or _nonzero(metric, v)]
                    merged.setdefault(metric, []).extend(samples)
            results.append((merged, ok_all, refused))
        return results

    def _collect_namespaces(self, merged, plan: Plan, durations, errors) -> None:
        """Collect every namespace inside it; beyond the cap, the quietest ones fold into netns="other"."""
        namespaces: NamespaceSet = plan.namespaces
        discovery = namespaces.discover()
        cannot_enter: Dict[str, int] = {}  # reason -> namespaces
        opened, doors = [], []  # (namespace, entered), the files that let the workers in
        for index, ns in enumerate(discovery.namespaces):
            try:
                door = open_door(ns) if index else None
            except NamespaceGone:
                log.debug("network namespace %s vanished before its collection", ns.label)
                continue
            except CannotEnter as e:
                self._cannot_enter(ns, e, cannot_enter)
                opened.append((ns, None))
                continue
            if door:
                doors.append(door)
            opened.append((ns, door))
        try:
            entered = [(ns, door) for ns, door in opened if door or ns is discovery.namespaces[0]]
            results = self._run_targets(plan, [(door, namespaces.context(ns), f"{IN_NETNS}{ns.label}", i > 0
                                                and plan.sparse) for i, (ns, door) in enumerate(entered)],
                                        durations, errors)
        finally:
            for door in doors:
                os.close(door.fd)
        outcome = {ns.inode: result for (ns, _), result in zip(entered, results)}
        collected = []  # (namespace, its samples, every collector succeeded)
        for ns, _ in opened:
            samples, ok, refused = outcome.get(ns.inode, ({}, False, None))
            if refused:
                self._cannot_enter(ns, CannotEnter(ns, refused), cannot_enter)
                samples = {}
            collected.append((ns, samples, ok))
        namespaces.retire({ns.inode for ns, _, _ in collected})
        cap = max(namespaces.cap, 1)
        own, others = collected[:1], sorted(collected[1:], key=_importance)
        for index, (ns, samples, ok) in enumerate(own + others):
            label = ns.label if index < cap else "other"
            for metric, values in samples.items():
                merged.setdefault(metric, []).extend(
                    values if metric in m.EXPORTER else [((label,) + labels, v) for labels, v in values])
            if index < cap:
                merged.setdefault(m.NETNS_UP, []).append(((label,), 1 if ok else 0))
                cgroup = process_cgroup(ns.pid) if ns.pid else ""
                who = owner(cgroup)
                merged.setdefault(m.NETNS_INFO, []).append(
                    ((label, str(ns.inode), cgroup, who.name, who.pod_uid, who.container_id), 1))
        folded = max(len(collected) - cap, 0)
        merged[m.NETNS_FOLDED] = [((), folded)]
        merged[m.NETNS_DISCOVERY] = [
            ((source, discovery.failures.get(source, ("", ""))[0]), 0 if source in discovery.failures else 1)
            for source, feature in (("named", "named_namespaces"), ("processes", "process_namespaces"))
            if plan.features.get(feature)]
        if cannot_enter:
            merged[m.NETNS_CANNOT_ENTER] = [((reason,), n) for reason, n in sorted(cannot_enter.items())]
        if folded:
            for metric in list(merged):
                if metric not in m.EXPORTER:
                    merged[metric] = fold(metric, merged[metric])

    def _cannot_enter(self, ns, error: CannotEnter, counts: Dict[str, int]) -> None:
        self._failed(f"netns {ns.label}", str(error))
        counts[error.reason] = counts.get(error.reason, 0) + 1

    def _apply_budget(self, merged: Dict[m.Metric, list], budget: int) -> Dict[str, int]:
        """Leave out breakdowns, most detailed first, until the scrape fits the budget; series left out by each."""
        total = sum(_series(metric, samples) for metric, samples in merged.items())
        needed = total
        dropped = {name: 0 for name, _ in m.BREAKDOWNS}
        for name, metrics in m.BREAKDOWNS:
            if total <= budget:
                break
            for metric in metrics:
                if metric in merged:
                    n = _series(metric, merged.pop(metric))
                    dropped[name] += n
                    total -= n
        now = tuple(name for name, n in dropped.items() if n)
        if now != self._last_dropped:
            if now:
                log.warning("series budget %d: %d series needed; left out %s; serving %d", budget, needed,
                            ", ".join(now), total)
            else:
                log.info("series budget %d: every breakdown fits again (%d series)", budget, total)
            self._last_dropped = now
        return dropped

    def _succeeded(self, col: Collector, where: str) -> None:
        name = f"collector {col.name}{where}"
        if self._last_error.get(name):
            log.info("%s recovered", name, extra={"COLLECTOR": col.name})
        self._last_error[name] = None

    def _failure(self, col: Collector, where: str, error: Exception, errors: Dict[str, str]) -> None:
        if isinstance(error, DiagError):
            text = str(error)
        else:  # a bug must not take the other collectors down
            log.debug("collector %s%s raised", col.name, where, exc_info=error)
            text = f"{type(error).__name__}: {error}"
        errors[f"{col.name}{where}"] = text
        self._failed(f"collector {col.name}{where}", text, col.name)

    def _failed(self, name: str, error: str, collector: str = "") -> None:
        """Log a failure once, and again only when the error changes."""
        if self._last_error.get(name) != error:
            log.warning("%s failed: %s", name, error, extra={"COLLECTOR": collector, "ERROR": error})
        self._last_error[name] = error


def _importance(collected) -> tuple:
    """Sort key of a collected namespace, most important first: trouble (a listener near its accept-queue limit,
    dropped packets), then more sockets, then the label."""
    ns, samples, _ = collected
    limits = {labels: value for labels, value in samples.get(m.LISTENER_QUEUE_LIMIT, ())}
    full = any(near_limit(length, limits.get(labels, 0)) for labels, length in samples.get(m.LISTENER_QUEUE_LENGTH, ()))
    drops = any(value for _, value in samples.get(m.MEMORY[-1], ()))  # sockdiag_dropped_packets
    sockets = sum(value for _, value in samples.get(m.SOCKETS, ()))
    return not (full or drops), -sockets, ns.label


def _every(collectors, ctx: Context) -> List[Tuple[bool, object]]:
    """(True, _timed(...)) or (False, the exception) of every collector in ctx, one after another."""
    return [WorkerPool.call(partial(_timed, col, ctx)) for col in collectors]


def _timed(col: Collector, ctx: Context) -> Tuple[Samples, float]:
    """One collector's samples and the seconds it took (on a worker, maybe beside others)."""
    started = time.monotonic()
    out = Samples()
    col.collect(ctx, out)
    return out, time.monotonic() - started


def _series(metric: m.Metric, samples: list) -> int:
    """How many series samples make: a histogram's buckets, _count and _sum (_gcount, _gsum) each count."""
    if metric.kind in m.HISTOGRAM_KINDS:
        return sum(len(buckets) + 2 for _, (buckets, _) in samples)
    return len(samples)


def _nonzero(metric: m.Metric, value) -> bool:
    if metric.kind in m.HISTOGRAM_KINDS:
        return value[0][-1][1] > 0  # the +Inf bucket: the socket (or observation) count
    return value != 0


def fold(metric: m.Metric, samples: list) -> list:
    """Merge samples with equal labels (namespaces folded into "other"): sums, or the largest for info-like ones
    and ratios."""
    merged: Dict[tuple, object] = {}
    for labels, value in samples:
        if labels not in merged:
            merged[labels] = value
        elif metric.kind in m.HISTOGRAM_KINDS:
            (buckets, total), (more, extra) = merged[labels], value
            merged[labels] = ([(le, n + k) for (le, n), (_, k) in zip(buckets, more)], total + extra)
        elif metric in m.LARGEST:
            merged[labels] = max(merged[labels], value)
        else:
            merged[labels] += value
    return list(merged.items())


def _family(metric: m.Metric, samples: list, namespaced: bool = False):
    labels = ("netns",) + metric.labels if namespaced and metric not in m.EXPORTER else metric.labels
    if metric.kind in m.HISTOGRAM_KINDS:
        cls = GaugeHistogramMetricFamily if metric.kind == "gaugehistogram" else HistogramMetricFamily
        family = cls(metric.name, metric.help, labels=labels)
        for labels, (buckets, total) in samples:
            family.add_metric(labels, buckets, total)
        return family
    cls = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
    family = cls(metric.name, metric.help, labels=labels)
    for labels, value in samples:
        family.add_metric(labels, value)
    return family


class RegistryAdapter:
    """A prometheus-client collector whose collect() is one (shared) Scraper collection."""

    def __init__(self, scraper: Scraper):
        self._scraper = scraper

    def collect(self):
        return self._scraper.collect().families()
