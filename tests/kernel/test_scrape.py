"""Fault isolation: a failing collector loses only its own metrics and says so; the scrape goes on."""

import logging

import helpers
from helpers import Exposition, make_scraper

from sockdiag_exporter.collectors.base import Collector
from sockdiag_exporter.diag.errors import DiagPermissionError


class Broken(Collector):
    def __init__(self, name, error):
        self.name = name
        self.error = error

    def collect(self, ctx, out):
        out.add(__import__("sockdiag_exporter.metrics").metrics.SOCKETS, ("inet", "stream", "tcp", "bogus"), 1)
        raise self.error


def render(scraper):
    return Exposition(helpers.render(scraper))


def test_failing_collectors_fail_alone_and_log_once_per_error(netns, caplog):
    scraper = make_scraper(collectors=[Broken("perm", DiagPermissionError("tcp dump: Operation not permitted (EPERM)")),
                                       Broken("bug", ZeroDivisionError("division by zero")), "unix"])
    with caplog.at_level(logging.WARNING):
        first = netns.run(render, scraper)
        netns.run(render, scraper)
    assert first.value("sockdiag_scrape_collector_success", collector="perm") == 0
    assert first.value("sockdiag_scrape_collector_success", collector="bug") == 0
    assert first.value("sockdiag_scrape_collector_success", collector="unix") == 1
    assert not first.select("sockdiag_sockets", state="bogus")  # a failed collector's partial output is dropped
    assert first.select("sockdiag_sockets", family="unix")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["collector perm failed: tcp dump: Operation not permitted (EPERM)",
                        "collector bug failed: ZeroDivisionError: division by zero"]


def test_dump_counter_counts_collections(netns):
    scraper = make_scraper(collectors=["tcp", "unix"])
    first = netns.run(render, scraper).value("sockdiag_netlink_dumps_total")
    second = netns.run(render, scraper).value("sockdiag_netlink_dumps_total")
    assert first == 6 and second == 12  # tcp: inet + inet6, each sockets + listeners; unix: sockets + listeners
