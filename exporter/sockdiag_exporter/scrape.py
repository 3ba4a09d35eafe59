"""One collection: run the enabled collectors, time them, and assemble metric families."""

import logging
import platform
from functools import partial
import time
from typing import Dict, List, Optional, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily

from . import __version__
from . import metrics as m
from .collectors.base import Collector, Context, Samples
from .diag.errors import DiagError
from .namespaces import NamespaceGone, NamespaceSet, container_name, process_cgroup, run_inside

log = logging.getLogger(__name__)


class Scraper:
    """Runs collectors one after another; a failing collector loses only its own metrics.

    series_budget (0: none) caps the series of one scrape by leaving out whole breakdowns, most detailed first.
    """

    def __init__(self, collectors: Sequence[Collector], ctx: Context, series_budget: int = 0,
                 namespaces: Optional[NamespaceSet] = None, features: Optional[Dict[str, bool]] = None):
        self.collectors = list(collectors)
        self.ctx = ctx
        self.series_budget = series_budget
        self.namespaces = namespaces  # None: the exporter's own namespace only, and no netns label
        self.features = features or {}  # configured optional features -> on
        self.sparse = True  # other namespaces without zero-valued series (namespaces.sparse)
        self._last_error: Dict[str, Optional[str]] = {}
        self._last_dropped: tuple = ()
        self.last_duration = 0.0
        self.last_sockets = 0
        self.last_failed = 0
        self.collecting_since: Optional[float] = None  # monotonic start of the collection in flight

    def collect(self) -> List:
        """Metric families of one full collection."""
        started = self.collecting_since = time.monotonic()
        try:
            return self._collect(started)
        finally:
            self.collecting_since = None

    def _collect(self, started: float) -> List:
        collectors, ctx, namespaces = self.collectors, self.ctx, self.namespaces  # a reload may swap them
        merged: Dict[m.Metric, list] = {}
        durations = {col.name: 0.0 for col in collectors}
        failed = set()
        if namespaces is None:
            self._collect_into(merged, collectors, ctx, (), durations, failed)
            merged[m.NETLINK_DUMPS] = [((), ctx.diag.dumps)]
            merged[m.NETLINK_DUMP_RETRIES] = [((), ctx.diag.retried)]
        else:
            self._collect_namespaces(merged, collectors, namespaces, durations, failed)
        if self.features:
            merged[m.FEATURE_ENABLED] = [((feature,), int(on)) for feature, on in self.features.items()]
        merged[m.COLLECTOR_DURATION] = [((name,), t) for name, t in durations.items()]
        merged[m.COLLECTOR_SUCCESS] = [((name,), 0 if name in failed else 1) for name in durations]
        merged[m.BUILD_INFO] = [((__version__, platform.python_version()), 1)]
        self.last_sockets = sum(v for _, v in merged.get(m.SOCKETS, ()))
        self.last_failed = len(failed)
        if self.series_budget:
            dropped = self._apply_budget(merged, self.series_budget)
            merged[m.SERIES_DROPPED] = [((name,), n) for name, n in dropped.items()]
        self.last_duration = time.monotonic() - started
        namespaced = namespaces is not None
        return [_family(metric, merged[metric], namespaced) for metric in m.ALL if metric in merged]

    def _collect_into(self, merged, collectors, ctx, prefix: tuple, durations, failed, where: str = "",
                      sparse: bool = False) -> bool:
        """Run every collector with ctx; their samples, labels prefixed, into merged. True if all succeeded.

        sparse (every namespace but the exporter's own): zero-valued series and the kernel-wide facts (handler
        availability, data source) are left out, so that a hundred pods do not make a hundred copies of them.
        """
        ok_all = True
        for col in collectors:
            t0 = time.monotonic()
            out = Samples()
            ok = self._run(col, ctx, out, where)
            durations[col.name] += time.monotonic() - t0
            if ok:
                for metric, samples in out.by_metric.items():
                    if sparse:
                        if metric in m.NOT_ADDITIVE:
                            continue
                        samples = [(labels, value) for labels, value in samples if _nonzero(metric, value)]
                    if prefix and metric not in m.EXPORTER:
                        samples = [(prefix + labels, value) for labels, value in samples]
                    merged.setdefault(metric, []).extend(samples)
            else:
                failed.add(col.name)
                ok_all = False
        return ok_all

    def _collect_namespaces(self, merged, collectors, namespaces: NamespaceSet, durations, failed) -> None:
        """Collect every namespace inside it; the folded ones under netns="other"."""
        kept, folded = namespaces.plan()
        seen = set()
        for index, ns in enumerate(kept + folded):
            label = ns.label if index < len(kept) else "other"
            ctx = namespaces.context(ns)
            try:
                ok = run_inside(ns, partial(self._collect_into, merged, collectors, ctx, (label,), durations, failed,
                                            f" in netns {ns.label}", sparse=index > 0 and self.sparse))
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
        merged[m.NETLINK_DUMPS] = [((), namespaces.dumps())]
        merged[m.NETLINK_DUMP_RETRIES] = [((), namespaces.retries())]
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

    def _run(self, col: Collector, ctx: Context, out: Samples, where: str = "") -> bool:
        name = f"collector {col.name}{where}"
        try:
            col.collect(ctx, out)
        except DiagError as e:
            self._failed(name, str(e), col.name)
            return False
        except Exception as e:  # a bug must not take the other collectors down
            log.debug("%s raised", name, exc_info=True)
            self._failed(name, f"{type(e).__name__}: {e}", col.name)
            return False
        if self._last_error.get(name):
            log.info("%s recovered", name, extra={"COLLECTOR": col.name})
        self._last_error[name] = None
        return True

    def _failed(self, name: str, error: str, collector: str = "") -> None:
        """Log a failure once, and again only when the error changes."""
        if self._last_error.get(name) != error:
            log.warning("%s failed: %s", name, error, extra={"COLLECTOR": collector, "ERROR": error})
        self._last_error[name] = error


def _series(metric: m.Metric, samples: list) -> int:
    """How many series samples make: a gauge histogram's buckets, _gcount and _gsum each count."""
    if metric.kind == "gaugehistogram":
        return sum(len(buckets) + 2 for _, (buckets, _) in samples)
    return len(samples)


def _nonzero(metric: m.Metric, value) -> bool:
    if metric.kind == "gaugehistogram":
        return value[0][-1][1] > 0  # the +Inf bucket: the socket count
    return value != 0


def _fold(metric: m.Metric, samples: list) -> list:
    """Merge samples with equal labels (namespaces folded into "other"): sums, or the largest for info-like ones."""
    merged: Dict[tuple, object] = {}
    for labels, value in samples:
        if labels not in merged:
            merged[labels] = value
        elif metric.kind == "gaugehistogram":
            (buckets, total), (more, extra) = merged[labels], value
            merged[labels] = ([(le, n + k) for (le, n), (_, k) in zip(buckets, more)], total + extra)
        elif metric in m.NOT_ADDITIVE:
            merged[labels] = max(merged[labels], value)
        else:
            merged[labels] += value
    return list(merged.items())


def _family(metric: m.Metric, samples: list, namespaced: bool = False):
    labels = ("netns",) + metric.labels if namespaced and metric not in m.EXPORTER else metric.labels
    if metric.kind == "gaugehistogram":
        family = GaugeHistogramMetricFamily(metric.name, metric.help, labels=labels)
        for labels, (buckets, total) in samples:
            family.add_metric(labels, buckets, total)
        return family
    cls = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
    family = cls(metric.name, metric.help, labels=labels)
    for labels, value in samples:
        family.add_metric(labels, value)
    return family


class RegistryAdapter:
    """A prometheus-client collector whose collect() is one Scraper collection (the web layer shares it among
    concurrent scrapes)."""

    def __init__(self, scraper: Scraper):
        self._scraper = scraper

    def collect(self):
        return self._scraper.collect()
