"""What the HTTP server serves: metrics in a format from a fixed set, single-flight, and the landing page.

Collection, encoding and compression run in worker threads, never on the event loop. Scrapes of any format that
arrive during a collection share it, and so do those that arrive after it ended, for as long as it took: collecting
takes at most half of the time however fast scrapes come. Each body is encoded once per collection: one per
(format, gzip), four at most, never keyed by client text. A `?name[]=` filter (client_python's) reuses the shared
collection and encodes its own body, bounded by the worker pool.
"""

import asyncio
import gzip
import html
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, FrozenSet, List, NamedTuple, Optional, Tuple

from prometheus_client import exposition
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics

from . import __version__
from . import metrics as m

log = logging.getLogger(__name__)

HTML = "text/html; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"


class Format(NamedTuple):
    content_type: str
    encode: Callable


def _text(registry) -> bytes:
    """The text format (0.0.4). It has no gauge histogram: client_python writes one as a histogram followed by its
    _gcount and _gsum as gauges under the parent's HELP ("one count per socket" over a sum of bytes). Here they are
    gauges of their own with their own HELP (metrics.GAUGE_HISTOGRAM_PARTS), in the same place."""
    return exposition.generate_latest(_Families(list(_gauge_histogram_parts(registry.collect()))))


def _gauge_histogram_parts(families):
    for family in families:
        parts = m.GAUGE_HISTOGRAM_PARTS.get(family.name) if family.type == "gaugehistogram" else None
        if not parts:
            yield family
            continue
        buckets = Metric(family.name, family.documentation, family.type, family.unit)
        buckets.samples = [s for s in family.samples if s.name == family.name + "_bucket"]
        yield buckets
        for suffix, text in parts:
            part = Metric(family.name + suffix, text, "gauge")
            part.samples = [s for s in family.samples if s.name == part.name]
            yield part


TEXT = Format("text/plain; version=0.0.4; charset=utf-8", _text)
OPENMETRICS = Format("application/openmetrics-text; version=1.0.0; charset=utf-8", openmetrics.generate_latest)
OPENMETRICS_VERSIONS = (None, "0.0.1", "1.0.0")  # the 1.0.0 body answers both: 0.0.1 is the same format

LANDING_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>sockdiag_exporter</title></head>
<body>
<h1>sockdiag_exporter {version}</h1>
<p>Prometheus metrics for every socket on this host, read through the kernel's sock_diag interface.</p>
<ul><li><a href="{path}">{path}</a> &mdash; metrics</li></ul>
</body>
</html>
"""

RENDER_THREADS = 2  # a collection and an encoding of another format at once


def _media_ranges(header: str):
    """(type/subtype lower-cased, params dict, q) of each element of an Accept-like header; malformed q is 0."""
    for element in header.split(","):
        parts = [p.strip() for p in element.split(";")]
        params = {}
        for p in parts[1:]:
            name, _, value = p.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        yield parts[0].lower(), params, q if 0.0 <= q <= 1.0 else 0.0


def choose_format(accept: str) -> Format:
    """OpenMetrics when Accept prefers it (by q) in a version served here; else the text format."""
    best_om = best_text = 0.0
    for media, params, q in _media_ranges(accept or ""):
        if media == "application/openmetrics-text" and params.get("version") in OPENMETRICS_VERSIONS:
            best_om = max(best_om, q)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, q)
    return OPENMETRICS if best_om > 0 and best_om >= best_text else TEXT


def wants_gzip(accept_encoding: str) -> bool:
    """True if Accept-Encoding gives gzip (or *, when gzip is not named) a q above 0 (RFC 9110 12.5.3)."""
    named = star = None
    for coding, _, q in _media_ranges(accept_encoding or ""):
        if coding in ("gzip", "x-gzip"):
            named = max(named or 0.0, q)
        elif coding == "*":
            star = q
    q = named if named is not None else star
    return bool(q)


class _Families:
    """A collected list of metric families, as the collector registry the encoders expect."""

    def __init__(self, families: List[Metric]):
        self._families = families

    def collect(self):
        return iter(self._families)


def restrict(families: List[Metric], names: FrozenSet[str]) -> List[Metric]:
    """Only the samples whose names are in names (client_python's `name[]` filter), families with none left out."""
    kept = []
    for family in families:
        samples = [s for s in family.samples if s.name in names]
        if samples:
            copy = Metric(family.name, family.documentation, family.type, family.unit)
            copy.samples = samples
            kept.append(copy)
    return kept


def landing_page(telemetry_path: str, collect: bool = True) -> bytes:
    return LANDING_PAGE.format(version=__version__, path=html.escape(telemetry_path)).encode()


class App:
    """The registry behind the telemetry path, rendered single-flight, and a callable making the page at /:
    landing(telemetry path, collect) -> bytes, where collect=False (the watchdog's probe) must not wait for a
    collection."""

    def __init__(self, registry, telemetry_path: str, landing: Optional[Callable[[str, bool], bytes]] = None):
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.landing = landing or landing_page
        self._pool = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="render")
        self._flying: Optional[_Flight] = None  # the collection in flight
        self._latest: Optional[_Flight] = None  # the last one that succeeded
        # told on the loop when a collection starts (True) and when the first body made from it is ready (False)
        self.on_busy: Callable[[bool], None] = lambda busy: None

    async def metrics(self, fmt: Format, gzipped: bool, names: Optional[FrozenSet[str]] = None) -> bytes:
        """The encoded (and gzipped) body of the current collection, each (format, gzip) encoded once for it."""
        flight = self._current()
        families = await asyncio.shield(flight.families)  # a client that leaves does not cancel the others' body
        try:
            if names is not None:  # keyed by client text: not shared, not remembered
                return await self._run(_encode, fmt, restrict(families, names), gzipped)
            key = (fmt, gzipped)
            body = flight.bodies.get(key)
            if body is None:
                body = flight.bodies[key] = asyncio.ensure_future(self._run(_encode, fmt, families, gzipped))
            return await asyncio.shield(body)
        finally:
            self._idle(flight)

    async def page(self, collect: bool = True) -> bytes:
        return await self._run(self.landing, self.telemetry_path, collect)

    def _current(self) -> "_Flight":
        """The collection in flight; else the last one while it is younger (from its end) than it took to make;
        else a new one. However fast scrapes come, collecting takes at most half of the time: 3,100 requests a
        second of radamsa, 220 of them valid scrapes, had the collection thread busy without a pause."""
        if self._flying is not None:
            return self._flying
        latest = self._latest
        if latest is not None and time.monotonic() < latest.reusable_until:
            return latest
        flight = self._flying = _Flight(asyncio.ensure_future(self._run(lambda: list(self.registry.collect()))))
        flight.families.add_done_callback(lambda done: self._landed(flight, done))
        self.on_busy(True)
        return flight

    def _landed(self, flight: "_Flight", done: asyncio.Future) -> None:
        self._flying = None
        if not done.cancelled() and done.exception() is None:
            ended = time.monotonic()
            flight.reusable_until = ended + (ended - flight.started)
            self._latest = flight
        else:
            self._idle(flight)

    def _idle(self, flight: "_Flight") -> None:
        """The flight's first body is ready (or it failed): the server may take new connections again."""
        if flight.busy:
            flight.busy = False
            self.on_busy(False)

    def _run(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Flight:
    """One collection: its families (a future), the bodies encoded from them, and until when it may be reused."""

    __slots__ = ("families", "bodies", "started", "reusable_until", "busy")

    def __init__(self, families: asyncio.Future):
        self.families = families
        self.bodies: Dict[Tuple[Format, bool], asyncio.Future] = {}  # the fixed set: four at most
        self.started = time.monotonic()
        self.reusable_until = 0.0
        self.busy = True  # until its first body is ready


def _encode(fmt: Format, families: List[Metric], gzipped: bool) -> bytes:
    body = fmt.encode(_Families(families))
    return gzip.compress(body, compresslevel=6) if gzipped else body
