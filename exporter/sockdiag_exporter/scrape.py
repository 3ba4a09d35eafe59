"""One collection: run the enabled collectors, time them, and assemble metric families (single-flight)."""

import logging
import platform
import threading
import time
from typing import Dict, List, Optional, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily

from . import __version__
from . import metrics as m
from .collectors.base import Collector, Context, Samples
from .diag.errors import DiagError

log = logging.getLogger(__name__)


class Scraper:
    """Runs collectors one after another; a failing collector loses only its own metrics.

    series_budget (0: none) caps the series of one scrape by leaving out whole breakdowns, most detailed first.
    """

    def __init__(self, collectors: Sequence[Collector], ctx: Context, series_budget: int = 0):
        self.collectors = list(collectors)
        self.ctx = ctx
        self.series_budget = series_budget
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
        collectors, ctx = self.collectors, self.ctx  # a reload may swap them while this runs
        merged: Dict[m.Metric, list] = {}
        for col in collectors:
            t0 = time.monotonic()
            out = Samples()
            ok = self._run(col, ctx, out)
            elapsed = time.monotonic() - t0
            if ok:
                for metric, samples in out.by_metric.items():
                    merged.setdefault(metric, []).extend(samples)
            merged.setdefault(m.COLLECTOR_DURATION, []).append(((col.name,), elapsed))
            merged.setdefault(m.COLLECTOR_SUCCESS, []).append(((col.name,), 1 if ok else 0))
        merged[m.NETLINK_DUMPS] = [((), ctx.diag.dumps)]
        merged[m.NETLINK_DUMP_RETRIES] = [((), ctx.diag.retried)]
        merged[m.BUILD_INFO] = [((__version__, platform.python_version()), 1)]
        self.last_sockets = sum(v for _, v in merged.get(m.SOCKETS, ()))
        self.last_failed = sum(1 for _, ok in merged[m.COLLECTOR_SUCCESS] if not ok) if collectors else 0
        if self.series_budget:
            dropped = self._apply_budget(merged, self.series_budget)
            merged[m.SERIES_DROPPED] = [((name,), n) for name, n in dropped.items()]
        self.last_duration = time.monotonic() - started
        return [_family(metric, merged[metric]) for metric in m.ALL if metric in merged]

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

    def _run(self, col: Collector, ctx: Context, out: Samples) -> bool:
        try:
            col.collect(ctx, out)
        except DiagError as e:
            self._failed(col.name, str(e))
            return False
        except Exception as e:  # a bug must not take the other collectors down
            log.debug("collector %s raised", col.name, exc_info=True)
            self._failed(col.name, f"{type(e).__name__}: {e}")
            return False
        if self._last_error.get(col.name):
            log.info("collector %s recovered", col.name, extra={"COLLECTOR": col.name})
        self._last_error[col.name] = None
        return True

    def _failed(self, name: str, error: str) -> None:
        """Log a collector's failure once, and again only when the error changes."""
        if self._last_error.get(name) != error:
            log.warning("collector %s failed: %s", name, error, extra={"COLLECTOR": name, "ERROR": error})
        self._last_error[name] = error


def _series(metric: m.Metric, samples: list) -> int:
    """How many series samples make: a gauge histogram's buckets, _gcount and _gsum each count."""
    if metric.kind == "gaugehistogram":
        return sum(len(buckets) + 2 for _, (buckets, _) in samples)
    return len(samples)


def _family(metric: m.Metric, samples: list):
    if metric.kind == "gaugehistogram":
        family = GaugeHistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
        for labels, (buckets, total) in samples:
            family.add_metric(labels, buckets, total)
        return family
    cls = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
    family = cls(metric.name, metric.help, labels=metric.labels)
    for labels, value in samples:
        family.add_metric(labels, value)
    return family


class SingleFlight:
    """Concurrent callers share one in-flight call; a call that starts after it finished runs anew."""

    def __init__(self, fn):
        self._fn = fn
        self._lock = threading.Lock()
        self._flight = None

    def __call__(self):
        with self._lock:
            flight = self._flight
            leader = flight is None
            if leader:
                flight = self._flight = _Flight()
        if leader:
            try:
                flight.result = self._fn()
            except BaseException as e:  # handed to every waiter
                flight.error = e
            finally:
                with self._lock:
                    self._flight = None
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.result


class _Flight:
    __slots__ = ("done", "result", "error")

    def __init__(self):
        self.done = threading.Event()
        self.result = None
        self.error = None


class RegistryAdapter:
    """A prometheus-client collector whose collect() is one single-flight Scraper collection."""

    def __init__(self, scraper: Scraper):
        self._collect = SingleFlight(scraper.collect)

    def collect(self):
        return self._collect()
