"""The page at /: the exporter's health and the host's socket tables (overview.py) as HTML, from the last collection.

Recent enough: a collection that ended less than max(REFRESH_SECONDS, DUTY x its duration) ago is shown as it is;
an older one (or none) makes the page ask for a collection, which joins one in flight (a scrape's) rather than
starting its own. A page left open therefore collects at most 1/DUTY of the time, and nothing while Prometheus
scrapes more often than that. The page refreshes itself on the same period (meta refresh: no JavaScript).

Cheap under request storms: the HTML is made at most once per collection and kept; every other request gets the
same bytes. Every string that comes from the kernel or the configuration is HTML-escaped (unix socket names are
whatever a local user chose) after overview.printable has made control characters visible.
"""

import html
import math
import os
import socket
import threading
import time
from typing import Optional, Tuple

from . import overview
from .overview import Overview, dash, kind, largest, printable, seconds, shares, size, span
from .scrape import Collection, Scraper

REFRESH_SECONDS = 10
DUTY = 10  # the page's own collections take at most 1/DUTY of the time
ROWS = 50  # rows per table; /metrics has the rest
NEAR_FULL = 0.8  # a listener this full is drawn as in trouble (the accept-queue alert's default threshold)


def period(collection: Collection) -> float:
    """How long a collection stays recent enough for the page, and how often the page refreshes."""
    return max(REFRESH_SECONDS, DUTY * collection.duration)


class LandingPage:
    """App's landing callable: page(telemetry_path, collect) -> HTML bytes, made once per collection."""

    def __init__(self, scraper: Scraper, started: float, clock=time.time):
        self.scraper = scraper
        self.started = started
        self.host = socket.gethostname()
        self.renders = 0  # pages made, for tests and the curious
        self._clock = clock
        self._lock = threading.Lock()
        self._collecting = threading.Lock()
        self._cached: Tuple[Optional[Collection], str, bytes] = (None, "", b"")

    def __call__(self, telemetry_path: str, collect: bool = True) -> bytes:
        """The page; collect=False (the watchdog's probe) never waits for a collection."""
        last = self.scraper.last
        if collect and not self._recent(last):
            with self._collecting:  # pages that found it old at once make one collection, not one each
                last = self.scraper.last
                if not self._recent(last):
                    last = self.scraper.collect()  # joins one in flight (a scrape's) if there is one
        if last is None:
            return waiting(telemetry_path)
        with self._lock:  # one render per collection even when two threads ask at once
            collection, path, body = self._cached
            if collection is not last or path != telemetry_path:
                body = render(overview.build(last, self.started), telemetry_path, self.host, period(last))
                self._cached = (last, telemetry_path, body)
                self.renders += 1
            return body

    def _recent(self, collection: Optional[Collection]) -> bool:
        return collection is not None and 0 <= self._clock() - collection.finished < period(collection)


def e(value) -> str:
    """A value from the kernel or the configuration, safe in HTML text and attributes."""
    return html.escape(printable(str(value)), quote=True)


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em;color:#1d2329}
h1{font-size:1.5em;margin:0}h1 small{color:#5c6670;font-weight:normal}h2{font-size:1.15em;margin:1.6em 0 .4em}
nav{margin:.3em 0 1em;color:#5c6670}a{color:#1558b0}
table{border-collapse:collapse;margin:.3em 0}th,td{padding:.2em .7em .2em 0;text-align:left;vertical-align:top;
white-space:nowrap}td.w{white-space:normal}
th{color:#5c6670;font-weight:600;border-bottom:1px solid #d0d7de}td.n,th.n{text-align:right}
tr:nth-child(even) td{background:#f6f8fa}.kv th{border:0;padding-right:1.2em}
.status{font-size:1.1em;font-weight:600;padding:.4em .8em;border-radius:4px;display:inline-block}
.ok{color:#116329}.bad{color:#a40e26}.warn{color:#7d4e00}.status.ok{background:#dafbe1}.status.bad{background:#ffebe9}
.bar{display:inline-block;width:8em;height:.8em;background:#eaeef2;border-radius:2px;vertical-align:middle}
.bar span{display:block;height:100%;background:#2da44e;border-radius:2px}.bar .warn{background:#d4a72c}
.bar .bad{background:#cf222e}code,.addr{font-family:ui-monospace,monospace;word-break:break-all}
.chips{padding:0;margin:.3em 0}.chips li{display:inline-block;margin:0 .3em .3em 0;padding:.1em .5em;
border-radius:3px;background:#dafbe1}.chips li.bad{background:#ffebe9}.note{color:#5c6670}
"""


def render(view: Overview, telemetry_path: str, host: str, refresh: float) -> bytes:
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<meta http-equiv=\"refresh\" content=\"{math.ceil(refresh)}\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        f"<title>sockdiag_exporter on {e(host)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        f"<h1>sockdiag_exporter <small>{e(view.version)} on {e(host)}</small></h1>\n",
        _links(telemetry_path),
        _health(view, refresh),
        _sockets(view),
        _listeners(view),
        _queues(view),
        _udp(view),
        _ports(view),
        _namespaces(view),
        f"<p class=\"note\">Made from the collection that ended {_time(view.finished)}; this page refreshes every "
        f"{math.ceil(refresh)} s. Every number here is in <a href=\"{e(telemetry_path)}\">{e(telemetry_path)}</a>.</p>\n",
        "</body>\n</html>\n",
    ]
    return "".join(parts).encode()


def waiting(telemetry_path: str) -> bytes:
    """Before the first collection, for the watchdog's probe (which never waits for one)."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" "
            f"content=\"2\"><title>sockdiag_exporter</title></head><body><h1>sockdiag_exporter</h1><p>No collection "
            f"yet. <a href=\"{e(telemetry_path)}\">{e(telemetry_path)}</a></p></body></html>\n").encode()


def _links(telemetry_path: str) -> str:
    installed = [name for name in ("README.md", "runbooks.md") if os.path.exists(os.path.join(overview.DOC_DIR, name))]
    local = f" (installed here: {', '.join(f'<code>{overview.DOC_DIR}/{n}</code>' for n in installed)})" \
        if installed else ""
    return (f"<nav><a href=\"{e(telemetry_path)}\">{e(telemetry_path)}</a> &middot; "
            f"<a href=\"{overview.README_METRICS_URL}\">what each metric means</a> &middot; "
            f"<a href=\"{overview.RUNBOOKS_URL}\">runbooks</a>{local}</nav>\n")


def _time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


def _health(view: Overview, refresh: float) -> str:
    count, failing = len(view.collectors), view.failing
    status = (f"<p class=\"status bad\">{failing} of {count} collectors failing</p>" if failing else
              f"<p class=\"status ok\">All {count} collectors OK</p>")
    if not failing and view.failures:
        status = f"<p class=\"status bad\">All {count} collectors OK; other failures below</p>"
    rows = [("Version", e(view.version)),
            ("Up", f"{span(view.finished - view.started)} at the last collection" if view.started else "-"),
            ("Last collection", f"{_time(view.finished)}, took {seconds(view.duration)} "
                                f"<span class=\"note\">(shown while younger than {math.ceil(refresh)} s)</span>"),
            ("Configuration file", f"<code>{e(view.config_file)}</code>" if view.config_file
             else "none (defaults and flags)"),
            ("Missing diag handlers", e(", ".join(view.missing_handlers)) or "none"),
            ("Features", "; ".join(f"{e(name)}: {e(state)}" for name, state in view.features))]
    table = "".join(f"<tr><th>{name}</th><td class=w>{value}</td></tr>" for name, value in rows)
    chips = "".join(f"<li class=\"{'ok' if c.ok else 'bad'}\">{e(c.name)} {'ok' if c.ok else 'FAILED'} "
                    f"{seconds(c.seconds)}</li>" for c in view.collectors)
    failures = ""
    if view.failures:
        failures = "<h3>Failures</h3><ul>" + "".join(f"<li class=\"bad\">{e(line)}</li>" for line in view.failures) \
            + "</ul>"
    return (f"<section id=\"health\"><h2>Health</h2>{status}<table class=\"kv\">{table}</table>"
            f"<ul class=\"chips\" title=\"collectors: result and duration\">{chips}</ul>{failures}</section>\n")


def _table(headers, rows, numeric=(), wrap=()) -> str:
    """rows of already escaped cells; numeric: column indexes aligned right; wrap: columns that may wrap."""
    def cls(i):
        return " class=n" if i in numeric else " class=w" if i in wrap else ""

    head = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _more(rows) -> str:
    return f"<p class=\"note\">&hellip; and {len(rows) - ROWS} more in /metrics.</p>" if len(rows) > ROWS else ""


def _kind(row) -> str:
    return e(kind(row.family, row.socket_type, row.protocol))


def _sockets(view: Overview) -> str:
    where = f" in network namespace {e(view.netns)}" if view.netns is not None else \
        f" in {len(view.namespaces)} network namespaces" if view.namespaces else ""
    rows = []
    for row in view.sockets:
        states = ", ".join(f"{e(state)} {count}" for state, count in row.states.items())
        if row.accept_limit:
            states += f" <span class=\"note\">(accept queues {row.accept_queue}/{row.accept_limit})</span>"
        rows.append((_kind(row), row.sockets, size(row.receive_queue), size(row.send_queue), states))
    table = _table(("Kind", "Sockets", "Receive queues", "Send queues", "By state"), rows, (1, 2, 3), (4,))
    return (f"<section id=\"sockets\"><h2>Sockets: {view.total_sockets}{where}</h2>{table}"
            f"<p class=\"note\">Queues of data sockets; listeners' accept queues apart.</p></section>\n")


def _fill(fill: float) -> str:
    level = "bad" if fill >= NEAR_FULL else "warn" if fill >= 0.5 else "ok"
    return (f"<span class=\"bar\"><span class=\"{level}\" style=\"width:{min(fill, 1.0) * 100:.0f}%\"></span></span> "
            f"<span class=\"{level}\">{fill:.0%}</span>")


def _dropped(drops: int) -> str:
    return f"<span class=\"bad\">{drops}</span>" if drops else "0"


def _listeners(view: Overview) -> str:
    if not view.listeners:
        return "<section id=\"listeners\"><h2>Listeners</h2><p>None.</p></section>\n"
    namespaced = any(row.netns for row in view.listeners)
    rows = [(_fill(row.fill), f"{row.length}/{row.limit}", _dropped(row.drops), row.half_open, _kind(row))
            + ((e(row.netns),) if namespaced else ()) + (f"<span class=\"addr\">{e(row.address)}</span>", row.sockets)
            for row in view.listeners[:ROWS]]
    headers = ("Fill", "Waiting/limit", "Dropped", "Half-open", "Kind") + (("Netns",) if namespaced else ()) + (
        "Address", "Sockets")
    counters = "" if view.listen_overflows is None else (
        f"<p>TCP accept-queue overflows since boot: <b>{view.listen_overflows}</b>; SYNs and connections dropped by "
        f"listeners: <b>{view.listen_drops}</b>.</p>")
    return (f"<section id=\"listeners\"><h2>Listeners: {len(view.listeners)}, fullest first</h2>{counters}"
            f"{_table(headers, rows, (1, 2, 3, len(headers) - 1), (len(headers) - 2,))}{_more(view.listeners)}"
            f"<p class=\"note\">Dropped: SYNs and connections the listener's sockets dropped since they were opened "
            f"(a full accept queue); half-open: connections still in the handshake (its SYN backlog).</p></section>\n")


def _queues(view: Overview) -> str:
    parts = []
    for title, rows in (("Receive", view.receive_queues), ("Send", view.send_queues)):
        cells = [(_kind(row), size(row.bytes), dash(row.data_sockets), dash(row.holding), e(largest(row)))
                 for row in rows[:ROWS]]
        body = _table(("Kind", "Bytes", "Data sockets", "Holding data", "Fullest socket"), cells, (1, 2, 3)) \
            if cells else "<p>All empty.</p>"
        parts.append(f"<h3>{title} queues</h3>{body}{_more(rows)}")
    return (f"<section id=\"queues\"><h2>Largest queues</h2>{''.join(parts)}<p class=\"note\">The fullest socket's "
            f"queue is bounded by the queue histograms' buckets (histograms.buckets).</p></section>\n")


def _udp(view: Overview) -> str:
    if not view.udp and not view.receivers:
        return ""
    rows = [(e(f"{row.family} {row.protocol}"), dash(row.receive_buffer_errors), dash(row.receive_errors),
             dash(row.dropped_by_live_sockets)) for row in view.udp]
    table = _table(("Kind", "Receive buffer full", "Not delivered", "Dropped by sockets open now"), rows, (1, 2, 3)) \
        if rows else ""
    receivers = ""
    if view.receivers:
        namespaced = any(row.netns for row in view.receivers)
        cells = [(_dropped(row.drops), _fill(row.fill), f"{size(row.queue)} / {size(row.buffer)}", _kind(row))
                 + ((e(row.netns),) if namespaced else ()) + (f"<span class=\"addr\">{e(row.address)}</span>",
                                                              row.sockets)
                 for row in view.receivers[:ROWS]]
        headers = ("Dropped", "Buffer fill", "Queued / buffer", "Kind") + (("Netns",) if namespaced else ()) + (
            "Address", "Sockets")
        receivers = (f"<h3>Receivers: {len(view.receivers)}, most drops first</h3>"
                     f"{_table(headers, cells, (0, 2, len(headers) - 1), (len(headers) - 2,))}{_more(view.receivers)}")
    return (f"<section id=\"udp\"><h2>UDP drops</h2>{table}<p class=\"note\">Datagrams since boot (per namespace), "
            f"and the drop counters of the sockets open now.</p>{receivers}</section>\n")


def _ports(view: Overview) -> str:
    if not view.ports:
        return ""
    namespaced = any(row.netns for row in view.ports)

    def where(row) -> tuple:
        return (e(row.netns),) if namespaced else ()

    def usage(row) -> str:
        return f"{_fill(row.busiest)} {e(shares(row))}" if row.usage else "none"

    rows = [where(row) + (dash(row.range_size), usage(row), f"{row.timewait} / {dash(row.timewait_limit)}")
            for row in view.ports[:ROWS]]
    first = len(where(view.ports[0]))
    where_header = ("Netns",) if namespaced else ()
    headers = where_header + ("Port range", "Busiest destination's share", "TIME_WAIT / limit")
    destinations = [where(row) + (e(family), f"<span class=\"addr\">{e(destination)}</span>", f"{share:.2%}")
                    for row in view.ports for family, destination, share in row.destinations]
    busiest = "" if not destinations else (
        "<h3>Busiest destinations</h3>"
        + _table(where_header + ("Family", "Destination", "Share of the range"), destinations[:ROWS],
                 (first + 2,), (first + 1,)) + _more(destinations))
    return (f"<section id=\"ports\"><h2>Ephemeral ports and TIME_WAIT</h2>"
            f"{_table(headers, rows, (first, first + 2))}{_more(view.ports)}{busiest}"
            f"<p class=\"note\">The busiest destination's share: client sockets towards one remote address and port "
            f"over the ports connect() can pick (at 100% connect() fails with EADDRNOTAVAIL), counted at most every "
            f"ephemeral_ports.interval_seconds. TIME_WAIT minisockets against net.ipv4.tcp_max_tw_buckets.</p>"
            f"</section>\n")


def _namespaces(view: Overview) -> str:
    if view.namespaces is None:
        return ""
    rows = [(e(row.netns), e(row.container), row.sockets,
             "<span class=\"ok\">none</span>" if not row.failures else
             "<span class=\"bad\">" + "<br>".join(e(f) for f in row.failures) + "</span>")
            for row in view.namespaces[:ROWS]]
    return (f"<section id=\"namespaces\"><h2>Network namespaces: {len(view.namespaces)}, largest first</h2>"
            f"{_table(('Netns', 'Container', 'Sockets', 'Failures'), rows, (2,), (3,))}{_more(view.namespaces)}"
            f"</section>\n")
