"""The landing page's and the summary's numbers (overview.py) equal /metrics of the same collection, and the page is
made from the last collection: a recent one is never collected again, the HTML is made once per collection, and
every string from the kernel or the configuration is escaped."""

import os
import threading
from html.parser import HTMLParser

from golden.replay import Proc, Recording
from helpers import Exposition, make_scraper, metrics_numbers, overview_numbers, render

from sockdiag_exporter import metrics as m
from sockdiag_exporter import overview, summary
from sockdiag_exporter.diag.netlink import DiagSocket
from sockdiag_exporter.landing import REFRESH_SECONDS, LandingPage, period

RECORDING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden", "kernel.json")
EVERYTHING = {"memory": {"collectors": ["tcp", "udp", "unix", "netlink", "packet"]}, "listeners": {"max_series": 2},
              "histograms": {"buckets": [0, 100, 1000, 65536]}, "ephemeral_ports": {"destinations": 2}}


def replayed(config=None):
    """A Scraper whose dumps and /proc files come from the recorded kernel (tests/golden/kernel.json)."""
    recording = Recording.load(RECORDING)
    return make_scraper(config or {}, make_diag=lambda: DiagSocket(connect=recording.connect),
                        proc=Proc(recording.proc))


class Counting:
    """A scraper as LandingPage sees it, counting collections."""

    def __init__(self, scraper):
        self.scraper, self.collections = scraper, 0

    @property
    def last(self):
        return self.scraper.last

    def collect(self):
        self.collections += 1
        return self.scraper.collect()


def test_overview_numbers_equal_the_metrics_of_the_same_collection():
    for config in ({}, EVERYTHING):
        scraper = replayed(config)
        text = render(scraper)  # one collection, rendered as /metrics serves it
        view = overview.build(scraper.last).as_dict()
        assert overview_numbers(view) == metrics_numbers(Exposition(text))
        assert view["total_sockets"] > 50 and view["listeners"] and view["udp"]


def test_the_summary_text_says_the_same_numbers_within_100_columns():
    scraper = replayed(EVERYTHING)
    scraper.collect()
    view = overview.build(scraper.last)
    lines = summary.text(view)
    assert max(len(line) for line in lines) <= summary.WIDTH
    assert f"SOCKETS: {view.total_sockets}" in lines
    for row in view.sockets:
        line = next(line for line in lines if line.startswith(overview.kind(row.family, row.socket_type,
                                                                             row.protocol) + " "))
        assert line.split()[len(overview.kind(row.family, row.socket_type, row.protocol).split())] == \
            str(row.sockets)
    for row in view.listeners:
        assert any(f"{row.length}/{row.limit}" in line and line.endswith(row.address) for line in lines)
    ports, = view.ports  # the busiest destinations, as ephemeral_ports.destinations names them (2 per family)
    assert len(ports.destinations) == 4 and ports.destinations[0][2] == ports.busiest > 0
    for family, destination, share in ports.destinations:
        assert any(line.split()[1:] == [family, destination] and line.split()[0] == f"{share:.2%}" for line in lines)


def test_a_recent_collection_is_shown_as_it_is_and_rendered_once():
    scraper = Counting(replayed())
    collection = scraper.collect()
    now = [collection.finished + REFRESH_SECONDS - 1]
    page = LandingPage(scraper, collection.finished - 60, clock=lambda: now[0])
    bodies = {id(page("/metrics")) for _ in range(100)}
    assert scraper.collections == 1 and page.renders == 1 and len(bodies) == 1
    assert page("/sockets") != page("/metrics") and page.renders == 3  # the link changed: made again
    assert period(collection._replace(duration=3.0)) == 30  # a slow collection stays recent longer


def test_an_old_collection_makes_one_new_collection_however_many_ask():
    scraper = Counting(replayed())
    collection = scraper.collect()
    now = [collection.finished + period(collection)]  # just too old
    page = LandingPage(scraper, collection.finished, clock=lambda: now[0])
    assert page("/metrics", collect=False) and scraper.collections == 1  # the watchdog's probe: never
    threads = [threading.Thread(target=page, args=("/metrics",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert scraper.collections == 2 and scraper.last is not collection and page.renders == 2


def test_before_the_first_collection():
    scraper = Counting(replayed())
    page = LandingPage(scraper, 0.0)
    assert b"No collection yet" in page("/metrics", collect=False) and scraper.collections == 0
    served = page("/metrics")
    count = len(scraper.last.plan.collectors)  # every collector of the default configuration, flows too
    assert count >= 15 and f"All {count} collectors OK".encode() in served and scraper.collections == 1


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.attributes = set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += [value or "" for _, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


HOSTILE = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>", "'onmouseover='alert(1)", "\x1b[2J&amp;"]


def test_every_kernel_and_configuration_string_is_escaped():
    scraper = replayed({"namespaces": {"named": True, "include": ["nothing-matches"]}})
    collection = scraper.collect()
    samples = dict(collection.samples)
    for name in HOSTILE:
        for metric, value in ((m.LISTENER_QUEUE_LENGTH, 3), (m.LISTENER_QUEUE_LIMIT, 4), (m.LISTENER_SOCKETS, 1)):
            samples[metric] = samples.get(metric, []) + [((name, "unix", "stream", "", name), value)]
        for metric, value in ((m.RECEIVER_QUEUE, 5), (m.RECEIVER_BUFFER, 10), (m.RECEIVER_DROPS, 2),
                              (m.RECEIVER_SOCKETS, 1)):
            samples[metric] = samples.get(metric, []) + [((name, "inet", "dgram", "udp", name), value)]
        samples[m.EPHEMERAL_DESTINATION_USAGE] = samples.get(m.EPHEMERAL_DESTINATION_USAGE, []) + [
            ((name, "inet", name), 0.5)]
        samples[m.NETNS_UP] = samples[m.NETNS_UP] + [((name,), 0)]
    hostile = collection._replace(samples=samples, errors={f"tcp in netns {HOSTILE[0]}": HOSTILE[1]},
                                  plan=collection.plan._replace(config_file=HOSTILE[2]))
    body = LandingPage(type("S", (), {"last": hostile})(), hostile.finished, clock=lambda: hostile.finished)(
        "/metrics").decode()
    parsed = Tags()
    parsed.feed(body)
    assert parsed.tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "small", "nav", "a",
                           "code", "section", "p", "table", "tr", "th", "td", "span", "ul", "li", "b", "br"}
    text = "".join(parsed.text)
    for name in HOSTILE[:3]:
        assert name in text  # shown as text
        assert not any(name in value for value in parsed.attributes)
    for section in ("udp", "ports"):  # the receivers' addresses, the destinations: as text there too
        part = Tags()
        part.feed(body.split(f"<section id=\"{section}\">")[1].split("</section>")[0])
        assert all(name in "".join(part.text) for name in HOSTILE[:3]), section
    assert "\x1b" not in body and "\\x1b[2J&amp;" in text  # control characters made visible, & kept as typed
