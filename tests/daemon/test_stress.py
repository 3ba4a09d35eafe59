"""Scrape storms and a soak, shortened for CI (tests/stress.py runs the full 60 s / 10,000 scrapes)."""

import socket

import pytest

from stress import load, soak


def test_concurrent_scrapers_share_collections_without_errors_or_growth(daemon, netns):
    d = daemon("--log.level=warn")
    result = load(netns, d, clients=50, duration=8)
    assert result["errors"] == 0, result["error_samples"]
    assert result["scrapes"] > 100
    assert result["collections"] < result["scrapes"] / 3  # concurrent scrapes shared collections
    assert result["rss_after_kb"] - result["rss_before_kb"] < 5 * 1024
    assert result["fds_after"] <= result["fds_before"] + 2


def test_soak_against_a_changing_population_stays_flat(daemon, netns):
    d = daemon("--log.level=warn")
    result = soak(netns, d, scrapes=600)
    low, high = result["rss_kb_min_max_after_warmup"]
    assert high - low < 3 * 1024
    low, high = result["fds_min_max_after_warmup"]
    assert high - low <= 2
    low, high = result["sockets_min_max"]
    assert high > low  # the population really changed


def test_a_stalled_client_does_not_delay_others(daemon, netns):
    d = daemon()
    stalled = netns.run(lambda: socket.create_connection(("127.0.0.1", 19965), timeout=5))
    try:
        stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        assert d.get("/metrics")[0] == 200
        stalled.setblocking(False)
        with pytest.raises(BlockingIOError):  # served while the stalled one still waits, unanswered and open
            stalled.recv(1)
    finally:
        stalled.close()
