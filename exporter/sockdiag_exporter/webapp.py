"""What the HTTP server serves: metrics in a format from a fixed set, single-flight, and the landing page.

Collection, encoding and compression run in worker threads, never on the event loop. Scrapes that arrive while a
body is being made await the same future: one per (format, gzip), four at most, never keyed by client text. Scrapes
of any format that arrive during a collection share it. A `?name[]=` filter (client_python's) reuses the shared
collection and encodes its own body, bounded by the worker pool.
"""

import asyncio
import gzip
import html
import logging
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
        self._collection: Optional[asyncio.Future] = None
        self._flights: Dict[Tuple[Format, bool], asyncio.Future] = {}

    async def metrics(self, fmt: Format, gzipped: bool, names: Optional[FrozenSet[str]] = None) -> bytes:
        """The encoded (and gzipped) body; the same future for every caller of one (format, gzip) meanwhile."""
        if names is not None:  # keyed by client text: not shared, not remembered
            families = restrict(await self._collect(), names)
            return await self._run(_encode, fmt, families, gzipped)
        key = (fmt, gzipped)
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = asyncio.ensure_future(self._render(fmt, gzipped))
            flight.add_done_callback(lambda _: self._flights.pop(key, None))
        return await asyncio.shield(flight)  # a client that leaves does not cancel the others' body

    async def page(self, collect: bool = True) -> bytes:
        return await self._run(self.landing, self.telemetry_path, collect)

    async def _render(self, fmt: Format, gzipped: bool) -> bytes:
        return await self._run(_encode, fmt, await self._collect(), gzipped)

    async def _collect(self) -> List[Metric]:
        if self._collection is None:
            self._collection = asyncio.ensure_future(self._run(lambda: list(self.registry.collect())))
            self._collection.add_done_callback(lambda _: setattr(self, "_collection", None))
        return await asyncio.shield(self._collection)

    def _run(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _encode(fmt: Format, families: List[Metric], gzipped: bool) -> bytes:
    body = fmt.encode(_Families(families))
    return gzip.compress(body, compresslevel=6) if gzipped else body
