"""`sockdiag-exporter summary`: one collection, printed for an operator on the box (`ss -s` with the exporter's
view: health, sockets by state, listeners by fill with their drops and SYN backlogs, the largest queues, UDP drops
and receivers, ephemeral ports and TIME_WAIT, namespaces), or as JSON.

Plain text within 100 columns; every string from the kernel or the configuration goes through
overview.printable, so a unix socket named with escape sequences cannot drive the terminal.
"""

import json
import sys
import time
from typing import List, Optional

from . import logsetup, overview
from .diag.netlink import DiagStats
from .overview import Overview, dash, kind, largest, printable, seconds, shares, size, span
from .plan import build_plan
from .scrape import Scraper

WIDTH = 100
KIND = 31  # "netlink kobject_uevent (dgram)"
ROWS = 20  # rows per table in the text form (JSON has them all)
BAR = 10


def run_summary(config, config_file: str, as_json: bool, namespaces: bool, netns: Optional[str],
                out=None) -> int:
    """Collect once with config and print; 0, or 1 when --netns names a namespace that was not collected."""
    out = out or sys.stdout
    logsetup.setup(config.log.level, config.log.format)  # warnings (a missing capability) go to stderr
    stats = DiagStats()
    scraper = Scraper(build_plan(config, stats, config_file), stats)
    try:
        collection = scraper.collect()
    finally:
        scraper.close()
    if netns is not None and netns not in overview.netns_labels(collection):
        labels = ", ".join(printable(label) for label in overview.netns_labels(collection))
        print(f"sockdiag-exporter: error: no network namespace {printable(netns)!r} was collected "
              f"(collected: {labels})", file=sys.stderr)
        return 1
    view = overview.build(collection, netns=netns)
    if not namespaces:
        view = view._replace(namespaces=None)
    if as_json:
        json.dump(view.as_dict(), out, indent=1)
        out.write("\n")
    else:
        out.write("\n".join(text(view)) + "\n")
    return 0


def text(view: Overview) -> List[str]:
    """The summary's lines, none wider than WIDTH."""
    lines = health(view)
    for section in (sockets, listeners, queues, udp, ports, namespaces):
        part = section(view)
        if part:
            lines += [""] + part
    return [line[:WIDTH] for line in lines]


def health(view: Overview) -> List[str]:
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(view.finished))
    lines = [f"sockdiag-exporter {view.version}: one collection at {when}, {seconds(view.duration)}"]
    if view.started is not None:
        lines.append(f"up {span(view.finished - view.started)}")
    failing = view.failing
    lines.append(f"collectors: {len(view.collectors) - failing} ok, {failing} failing"
                 if failing else f"collectors: all {len(view.collectors)} ok")
    lines += wrap("  ", [f"{c.name}:{'FAILED:' if not c.ok else ''}{seconds(c.seconds).replace(' ', '')}"
                         for c in view.collectors])
    if view.failures:
        lines.append("failures:")
        lines += [f"  {printable(line)}" for line in view.failures]
    lines += wrap("missing diag handlers: ", list(view.missing_handlers) or ["none"])
    lines += wrap("features: ", [f"{name}={printable(state)}" for name, state in view.features])
    lines.append(f"configuration: {printable(view.config_file) or 'none (defaults and flags)'}")
    return lines


def sockets(view: Overview) -> List[str]:
    where = f"network namespace {printable(view.netns)}" if view.netns is not None else \
        f"{len(view.namespaces)} network namespaces" if view.namespaces else ""
    lines = [f"SOCKETS: {view.total_sockets}" + (f" in {where}" if where else ""),
             f"{'':<{KIND}}{'sockets':>9}{'recv-q':>11}{'send-q':>11}  states"]
    for row in view.sockets:
        states = [f"{state} {count}" for state, count in row.states.items()]
        if row.accept_limit:
            states.append(f"(accept queues {row.accept_queue}/{row.accept_limit})")
        head = (f"{printable(kind(row.family, row.socket_type, row.protocol)):<{KIND}}{row.sockets:>9}"
                f"{size(row.receive_queue):>11}{size(row.send_queue):>11}  ")
        lines += wrap(head, states, indent=len(head))
    return lines


def listeners(view: Overview) -> List[str]:
    if not view.listeners:
        return []
    counters = "" if view.listen_overflows is None else \
        f"; TCP since boot: {view.listen_overflows} overflows, {view.listen_drops} drops"
    lines = [f"LISTENERS: {len(view.listeners)}, fullest first{counters}"]
    netns = any(row.netns for row in view.listeners)
    head = f"{'fill':<18}{'queue/limit':>13}{'dropped':>9}{'half-open':>10}  {'kind':<14}"
    lines.append(head + ("netns / address" if netns else "address"))
    for row in view.listeners[:ROWS]:
        address = f"{row.netns} {row.address}" if netns else row.address
        start = (f"{bar(row.fill)} {row.fill:>5.0%}{f'{row.length}/{row.limit}':>13}{row.drops:>9}"
                 f"{row.half_open:>10}  {printable(kind(row.family, row.socket_type, row.protocol)):<14}")
        lines.append(start + clip(printable(address), WIDTH - len(start)))
    return lines + more(view.listeners)


def queues(view: Overview) -> List[str]:
    lines = []
    for title, rows in (("RECEIVE QUEUES", view.receive_queues), ("SEND QUEUES", view.send_queues)):
        if not rows:
            continue
        lines += ([""] if lines else []) + [f"{title}: largest first (data sockets; listeners excluded)",
                                            f"{'':<{KIND}}{'bytes':>11}{'sockets':>9}{'holding':>9}  fullest socket"]
        for row in rows[:ROWS]:
            lines.append(f"{printable(kind(row.family, row.socket_type, row.protocol)):<{KIND}}{size(row.bytes):>11}"
                         f"{dash(row.data_sockets):>9}{dash(row.holding):>9}  {largest(row)}")
        lines += more(rows)
    return lines


def udp(view: Overview) -> List[str]:
    lines = []
    if view.udp:
        lines += ["UDP DROPS: datagrams since boot, and the drop counters of the sockets open now",
                  f"{'':<{KIND}}{'buffer full':>13}{'not delivered':>15}{'open sockets':>14}"]
        for row in view.udp:
            lines.append(f"{row.family + ' ' + row.protocol:<{KIND}}{dash(row.receive_buffer_errors):>13}"
                         f"{dash(row.receive_errors):>15}{dash(row.dropped_by_live_sockets):>14}")
    if view.receivers:
        netns = any(row.netns for row in view.receivers)
        head = f"{'dropped':>9}{'fill':>6}{'queued / buffer':>22}  {'kind':<14}"
        lines += ([""] if lines else []) + [f"UDP RECEIVERS: {len(view.receivers)}, most drops first",
                                            head + ("netns / address" if netns else "address")]
        for row in view.receivers[:ROWS]:
            address = f"{row.netns} {row.address}" if netns else row.address
            start = (f"{row.drops:>9}{row.fill:>6.0%}{size(row.queue) + ' / ' + size(row.buffer):>22}  "
                     f"{printable(kind(row.family, row.socket_type, row.protocol)):<14}")
            lines.append(start + clip(printable(address), WIDTH - len(start)))
        lines += more(view.receivers)
    return lines


def ports(view: Overview) -> List[str]:
    if not view.ports:
        return []
    lines = ["EPHEMERAL PORTS AND TIME_WAIT: the busiest destination's share of the port range",
             f"{'netns':<30}{'range':>8}  {'busiest destination':<32}{'time_wait / limit':>20}"]
    for row in view.ports[:ROWS]:
        lines.append(f"{clip(printable(row.netns) or '-', 29):<30}{dash(row.range_size):>8}  {shares(row):<32}"
                     f"{f'{row.timewait} / {dash(row.timewait_limit)}':>20}")
    lines += more(view.ports)
    destinations = [(row.netns, *d) for row in view.ports for d in row.destinations]
    if destinations:
        lines.append("busiest destinations:")
        for netns, family, destination, share in destinations[:ROWS]:
            lines.append(clip(f"  {share:>7.2%}  {family:<6}{printable(destination)}"
                              + (f"  (netns {printable(netns)})" if netns else ""), WIDTH))
        lines += more(destinations)
    return lines


def namespaces(view: Overview) -> List[str]:
    if not view.namespaces:
        return []
    lines = [f"NETWORK NAMESPACES: {len(view.namespaces)}, largest first",
             f"{'netns':<30}{'container':<30}{'sockets':>9}  failures"]
    for row in view.namespaces:
        failures = "; ".join(printable(f) for f in row.failures) or "none"
        start = f"{clip(printable(row.netns), 29):<30}{clip(printable(row.container), 29):<30}{row.sockets:>9}  "
        lines.append(start + clip(failures, WIDTH - len(start)))
    return lines


def bar(fill: float) -> str:
    full = min(int(round(fill * BAR)), BAR)
    return "[" + "#" * full + "." * (BAR - full) + "]"


def clip(text: str, width: int) -> str:
    """text cut to width, the cut marked: the end of a path says more than its start, so the start goes."""
    return text if len(text) <= width else "..." + text[len(text) - width + 3:]


def wrap(head: str, words: List[str], indent: int = 2) -> List[str]:
    """words after head, on as many lines as WIDTH needs."""
    lines, line = [], head
    for word in words:
        if line.strip() and len(line) + len(word) + 1 > WIDTH and line != head:
            lines.append(line.rstrip())
            line = " " * indent
        line += word + " "
    lines.append(line.rstrip())
    return lines


def more(rows) -> List[str]:
    return [f"  ... and {len(rows) - ROWS} more (--json has them all)"] if len(rows) > ROWS else []
