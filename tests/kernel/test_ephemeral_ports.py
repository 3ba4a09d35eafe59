"""Ephemeral-port headroom on the real kernel: a namespace with a narrowed net.ipv4.ip_local_port_range, clients
opening connections to one destination until connect() fails, and to others, against ss -tan."""

import errno
import socket

import pytest

from helpers import Exposition, make_scraper, render, scrape, settle


def listeners(ns, *addresses):
    def work():
        for host, port in addresses:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family)
            s.bind((host, port))
            s.listen(4096)
            ns.keep.append(s)
            yield s

    return ns.run(lambda: list(work()))


def connect(ns, server, count, close_first=0):
    """count connections to server (accepted); the first close_first closed by the client first: TIME_WAIT on its
    side, holding its port. Returns how many connects succeeded (EADDRNOTAVAIL ends the loop)."""
    def work():
        made = 0
        for i in range(count):
            c = socket.socket(server.family)
            try:
                c.connect(server.getsockname()[:2])
            except OSError as e:
                c.close()
                assert e.errno == errno.EADDRNOTAVAIL
                return made
            accepted, _ = server.accept()
            made += 1
            if i < close_first:
                c.close()
                accepted.close()
            else:
                ns.keep.extend([c, accepted])
        return made

    return ns.run(work)


def ss_usage(ns, low, high):
    """(local address, remote address:port) -> sockets whose local port is in low..high (every state, as ss -tan)."""
    usage = {}
    for _, _, _, _, rest in ns.ss("-t", "-a"):
        local, peer = rest[0], rest[1]
        host, _, port = local.rpartition(":")
        if low <= int(port) <= high:
            usage[(host, peer)] = usage.get((host, peer), 0) + 1
    return usage


def test_a_destination_runs_out_of_ports_at_ratio_one(netns):
    """connect() to one destination fails with EADDRNOTAVAIL exactly when the range less the reserved ports is
    used up, which the exporter shows as a usage ratio of 1; a second destination still has every port."""
    netns.sh("sysctl -qw net.ipv4.ip_local_port_range='40000 40099' net.ipv4.ip_local_reserved_ports=40050-40059")
    first, second = listeners(netns, ("127.0.0.1", 8000), ("127.0.0.1", 8001))
    assert connect(netns, first, 200) == 90
    assert connect(netns, second, 10) == 10
    settle(netns)
    exposition = scrape(netns, "tcp", config={"ephemeral_ports": {"destinations": 5}})
    assert exposition.value("sockdiag_ephemeral_port_range_size") == 90
    assert exposition.value("sockdiag_ephemeral_port_usage_ratio", family="inet") == 1.0
    assert not exposition.select("sockdiag_ephemeral_port_usage_ratio", family="inet6")  # no such sockets
    per_destination = {dict(k)["destination"]: v for k, v in
                       exposition.select("sockdiag_ephemeral_port_destination_usage_ratio").items()}
    assert per_destination == {"127.0.0.1:8000": 1.0, "127.0.0.1:8001": 10 / 90}
    assert ss_usage(netns, 40000, 40099) == {("127.0.0.1", "127.0.0.1:8000"): 90, ("127.0.0.1", "127.0.0.1:8001"): 10}


@pytest.mark.parametrize("destinations", [0, 1])
def test_thousands_of_connections_per_destination_match_ss(netns, destinations):
    """1500 connections (100 of them closed: TIME_WAIT) to one destination, 300 to another address on the same
    port, 40 over IPv6: the ratios are ss's counts over the range size, per family; with
    ephemeral_ports.destinations: 1 only the busiest destination of each family is named."""
    netns.sh("sysctl -qw net.ipv4.ip_local_port_range='40000 41999'")
    a, b, v6 = listeners(netns, ("127.0.0.1", 8000), ("127.0.0.2", 8000), ("::1", 8000))
    assert connect(netns, a, 1500, close_first=100) == 1500
    assert connect(netns, b, 300) == 300
    assert connect(netns, v6, 40) == 40
    settle(netns)
    exposition = scrape(netns, "tcp", config={"ephemeral_ports": {"destinations": destinations}})
    theirs = ss_usage(netns, 40000, 41999)
    assert theirs == {("127.0.0.1", "127.0.0.1:8000"): 1500, ("127.0.0.1", "127.0.0.2:8000"): 300,
                      ("[::1]", "[::1]:8000"): 40}
    time_wait = sum(1 for _, state, _, _, rest in netns.ss("-t", "-a") if state == "TIME-WAIT")
    assert time_wait == 100
    assert exposition.value("sockdiag_ephemeral_port_range_size") == 2000
    assert exposition.value("sockdiag_ephemeral_port_usage_ratio", family="inet") == 1500 / 2000
    assert exposition.value("sockdiag_ephemeral_port_usage_ratio", family="inet6") == 40 / 2000
    named = exposition.select("sockdiag_ephemeral_port_destination_usage_ratio")
    if destinations:
        assert {dict(k)["destination"]: v for k, v in named.items()} == {"127.0.0.1:8000": 0.75,
                                                                          "[::1]:8000": 0.02}
        assert exposition.value("sockdiag_ephemeral_port_destinations_folded", family="inet") == 1
        assert exposition.value("sockdiag_ephemeral_port_destinations_folded", family="inet6") == 0
    else:
        assert not named and not exposition.select("sockdiag_ephemeral_port_destinations_folded")


def test_the_analysis_is_kept_for_interval_seconds(netns):
    """Counting per destination is done once per ephemeral_ports.interval_seconds (60 by default): a second
    collection within it shows the first one's analysis; with 0, every collection counts again; a changed port range
    makes it due at once."""
    netns.sh("sysctl -qw net.ipv4.ip_local_port_range='40000 40099'")
    (server,) = listeners(netns, ("127.0.0.1", 8000))
    connect(netns, server, 10)

    def collections(config):
        scraper = netns.run(make_scraper, config, ("tcp",))
        try:
            first = Exposition(netns.run(render, scraper))
            connect(netns, server, 20)
            second = Exposition(netns.run(render, scraper))
            netns.sh("sysctl -qw net.ipv4.ip_local_port_range='40000 40199'")
            third = Exposition(netns.run(render, scraper))
        finally:
            scraper.close()
        return [e.value("sockdiag_ephemeral_port_usage_ratio", family="inet") for e in (first, second, third)]

    assert collections({}) == [10 / 100, 10 / 100, 30 / 200]
    netns.sh("sysctl -qw net.ipv4.ip_local_port_range='40000 40099'")
    assert collections({"ephemeral_ports": {"interval_seconds": 0}}) == [30 / 100, 50 / 100, 50 / 200]
