"""One collection: run the enabled collectors, time them, and assemble metric families (single-flight)."""

import logging
import platform
import threading
import time
from typing import Dict, List, Optional, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import __version__
from . import metrics as m
from .collectors.base import Collector, Context, Samples
from .diag.errors import DiagError

log = logging.getLogger(__name__)


class Scraper:
    """Runs collectors one after another; a failing collector loses only its own metrics."""

    def __init__(self, collectors: Sequence[Collector], ctx: Context):
        self.collectors = list(collectors)
        self.ctx = ctx
        self._last_error: Dict[str, Optional[str]] = {}
        self.last_duration = 0.0
        self.last_sockets = 0

    def collect(self) -> List:
        """Metric families of one full collection."""
        started = time.monotonic()
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
        self.last_duration = time.monotonic() - started
        self.last_sockets = sum(v for _, v in merged.get(m.SOCKETS, ()))
        return [_family(metric, merged[metric]) for metric in m.ALL if metric in merged]

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
            log.info("collector %s recovered", col.name)
        self._last_error[col.name] = None
        return True

    def _failed(self, name: str, error: str) -> None:
        """Log a collector's failure once, and again only when the error changes."""
        if self._last_error.get(name) != error:
            log.warning("collector %s failed: %s", name, error)
        self._last_error[name] = error


def _family(metric: m.Metric, samples: list):
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
