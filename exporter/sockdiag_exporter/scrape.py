"""One collection: run the plan's collectors (in every planned network namespace), time them, keep a failing one's
error to itself, fold and budget series; the result is a Collection, rendered by the registry adapter."""

import logging
import platform
import time
from functools import partial
from typing import Dict, List, NamedTuple, Optional

from prometheus_client.core import (CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily,
                                   HistogramMetricFamily)

from . import __version__
from . import metrics as m
from .collectors.base import Collector, Context, Samples
from .containers import container_name, process_cgroup
from .diag.errors import DiagError
from .diag.netlink import DiagStats
from .namespaces import NamespaceGone, NamespaceSet, run_inside
from .plan import Plan, PlanHolder
from .singleflight import SingleFlight

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
            self._collect_into(merged, plan.collectors, plan.own, (), durations, errors)
        else:
            self._collect_namespaces(merged, plan, durations, errors)
        merged[m.NETLINK_DUMPS] = [((), self.stats.dumps)]
        merged[m.NETLINK_DUMP_RETRIES] = [((), self.stats.retries)]
        if plan.features:
            merged[m.FEATURE_ENABLED] = [((feature,), int(on)) for feature, on in plan.features.items()]
        failed = {name.partition(IN_NETNS)[0] for name in errors}
        merged[m.COLLECTOR_DURATION] = [((name,), t) for name, t in durations.items()]
        merged[m.COLLECTOR_SUCCESS] = [((name,), 0 if name in failed else 1) for name in durations]
        merged[m.BUILD_INFO] = [((__version__, platform.python_version()), 1)]
        if plan.series_budget:
            dropped = self._apply_budget(merged, plan.series_budget)
            merged[m.SERIES_DROPPED] = [((name,), n) for name, n in dropped.items()]
        return Collection(merged, plan.namespaces is not None, time.time(), time.monotonic() - started, errors, plan)

    def _collect_into(self, merged, collectors, ctx: Context, prefix: tuple, durations, errors, where: str = "",
                      sparse: bool = False) -> bool:
        """Run every collector with ctx; their samples, labels prefixed, into merged. True if all succeeded.

        sparse (every namespace but the exporter's own): zero-valued series and the kernel-wide facts (handler
        availability, data source) are left out, so that a hundred pods do not make a hundred copies of them.
        """
        ok_all = True
        for col in collectors:
            t0 = time.monotonic()
            out = Samples()
            ok = self._run(col, ctx, out, where, errors)
            durations[col.name] += time.monotonic() - t0
            if not ok:
                ok_all = False
                continue
            for metric, samples in out.by_metric.items():
                if sparse:
                    if metric in m.NOT_ADDITIVE:
                        continue
                    samples = [(labels, value) for labels, value in samples
                               if metric in m.KEEP_ZERO or _nonzero(metric, value)]
                if prefix and metric not in m.EXPORTER:
                    samples = [(prefix + labels, value) for labels, value in samples]
                merged.setdefault(metric, []).extend(samples)
        return ok_all

    def _collect_namespaces(self, merged, plan: Plan, durations, errors) -> None:
        """Collect every namespace inside it; the folded ones under netns="other"."""
        namespaces: NamespaceSet = plan.namespaces
        kept, folded = namespaces.plan()
        seen = set()
        for index, ns in enumerate(kept + folded):
            label = ns.label if index < len(kept) else "other"
            ctx = namespaces.context(ns)
            try:
                ok = run_inside(ns, partial(self._collect_into, merged, plan.collectors, ctx, (label,), durations,
                                            errors, f"{IN_NETNS}{ns.label}", sparse=index > 0 and plan.sparse))
            except NamespaceGone:
                log.debug("network namespace %s vanished during the collection", ns.label)
                continue
            except OSError as e:  # setns refused
                self._failed(f"netns {ns.label}", f"cannot enter network namespace {ns.label}: {e.strerror}")
                ok = False
            seen.add(ns.inode)
            if index < len(kept):
                merged.setdefault(m.NETNS_UP, []).append(((label,), 1 if ok else 0))
                cgroup = process_cgroup(ns.pid) if ns.pid else ""
                merged.setdefault(m.NETNS_INFO, []).append(
                    ((label, str(ns.inode), cgroup, container_name(cgroup)), 1))
        namespaces.retire(seen)
        merged[m.NETNS_FOLDED] = [((), len(folded))]
        if folded:
            for metric in list(merged):
                if metric not in m.EXPORTER:
                    merged[metric] = _fold(metric, merged[metric])

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

    def _run(self, col: Collector, ctx: Context, out: Samples, where: str, errors: Dict[str, str]) -> bool:
        name = f"{col.name}{where}"
        try:
            col.collect(ctx, out)
        except DiagError as e:
            errors[name] = str(e)
        except Exception as e:  # a bug must not take the other collectors down
            log.debug("collector %s raised", name, exc_info=True)
            errors[name] = f"{type(e).__name__}: {e}"
        if name in errors:
            self._failed(f"collector {name}", errors[name], col.name)
            return False
        if self._last_error.get(f"collector {name}"):
            log.info("collector %s recovered", name, extra={"COLLECTOR": col.name})
        self._last_error[f"collector {name}"] = None
        return True

    def _failed(self, name: str, error: str, collector: str = "") -> None:
        """Log a failure once, and again only when the error changes."""
        if self._last_error.get(name) != error:
            log.warning("%s failed: %s", name, error, extra={"COLLECTOR": collector, "ERROR": error})
        self._last_error[name] = error


def _series(metric: m.Metric, samples: list) -> int:
    """How many series samples make: a histogram's buckets, _count and _sum (_gcount, _gsum) each count."""
    if metric.kind in m.HISTOGRAM_KINDS:
        return sum(len(buckets) + 2 for _, (buckets, _) in samples)
    return len(samples)


def _nonzero(metric: m.Metric, value) -> bool:
    if metric.kind in m.HISTOGRAM_KINDS:
        return value[0][-1][1] > 0  # the +Inf bucket: the socket (or observation) count
    return value != 0


def _fold(metric: m.Metric, samples: list) -> list:
    """Merge samples with equal labels (namespaces folded into "other"): sums, or the largest for info-like ones."""
    merged: Dict[tuple, object] = {}
    for labels, value in samples:
        if labels not in merged:
            merged[labels] = value
        elif metric.kind in m.HISTOGRAM_KINDS:
            (buckets, total), (more, extra) = merged[labels], value
            merged[labels] = ([(le, n + k) for (le, n), (_, k) in zip(buckets, more)], total + extra)
        elif metric in m.NOT_ADDITIVE:
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
