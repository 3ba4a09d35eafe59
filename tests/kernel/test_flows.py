"""Connection flows from real connections in fresh network namespaces: every outcome the exporter exports made to
happen for real, counts checked against the kernel's own counters (/proc/net/snmp: ActiveOpens, PassiveOpens,
RetransSegs), bytes against what the test sent, RTT through a link with a known delay, loss through a flood that
overruns the receive buffer, namespace mode, and an unprivileged exporter."""

import gc
import logging
import select
import socket
import struct
import threading
import time

import pytest

from helpers import Exposition, NetNS, drop_thread_privileges, listen, make_scraper, render
from tunlink import TunLink

PORT = 8000
CLOSED = "sockdiag_tcp_connections_closed_total"


class Flows:
    """An exporter's scraper made inside a namespace (so its subscriber is that namespace's), scraped there."""

    def __init__(self, ns, config=None, unprivileged=False):
        self.ns, self.unprivileged = ns, unprivileged
        self.scraper = self._run(make_scraper, config)
        ns.keep.append(self.scraper)

    def _run(self, fn, *args):
        """fn in a thread inside the namespace, as nobody when unprivileged (credentials are per thread)."""
        def work():
            if self.unprivileged:
                drop_thread_privileges()
            return fn(*args)

        return self.ns.run(work)

    def scrape(self) -> Exposition:
        return Exposition(self._run(render, self.scraper))

    def until(self, predicate, timeout=15.0) -> Exposition:
        """Scrape until predicate(exposition) holds (events arrive asynchronously); the last scrape."""
        deadline = time.monotonic() + timeout
        while True:
            exposition = self.scrape()
            if predicate(exposition) or time.monotonic() > deadline:
                return exposition
            time.sleep(0.05)


def closed(exposition: Exposition, **labels) -> float:
    return sum(exposition.select(CLOSED, **labels).values())


def outcomes(exposition: Exposition, **labels) -> dict:
    """(direction, outcome) -> connections, of the non-zero series."""
    found = {}
    for key, value in exposition.select(CLOSED, **labels).items():
        key = dict(key)
        found[(key["direction"], key["outcome"])] = found.get((key["direction"], key["outcome"]), 0) + value
    return found


def snmp(ns) -> dict:
    """The namespace's Tcp counters from /proc/net/snmp (read inside it)."""
    def read():
        lines = [line.split() for line in open("/proc/thread-self/net/snmp") if line.startswith("Tcp:")]
        return dict(zip(lines[0][1:], map(int, lines[1][1:])))

    return ns.run(read)


def connect(ns, address, family=socket.AF_INET, options=None):
    client = ns.run(socket.socket, family)
    for (level, name), value in (options or {}).items():
        client.setsockopt(level, name, value)
    client.connect(address)
    return client


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_completed_connections_counted_once_at_each_end_with_their_bytes(netns, family, host):
    n = 20
    server = listen(netns, host, family=family)
    flows = Flows(netns, {"port_groups": {"web": {"local": [PORT]}}})
    before = snmp(netns)
    clients, accepted = [], []
    for i in range(n):
        client = connect(netns, (host, PORT), family)
        conn, _ = server.accept()
        client.sendall(b"q" * (100 * (i + 1)))
        read_exactly(conn, 100 * (i + 1))
        conn.sendall(b"r" * (7 * (i + 1)))
        read_exactly(client, 7 * (i + 1))
        clients.append(client)
        accepted.append(conn)
    sent, replied = sum(100 * (i + 1) for i in range(n)), sum(7 * (i + 1) for i in range(n))
    for client in clients:  # the clients close first; each client socket is freed once its FIN is acknowledged
        client.close()
    fam = "inet6" if family == socket.AF_INET6 else "inet"
    flows.until(lambda e: closed(e, direction="outbound") >= n)
    for conn in accepted:  # then the server, so that no FIN of the server reaches a client's full socket
        conn.close()
    exposition = flows.until(lambda e: closed(e, direction="inbound") >= n)
    after = snmp(netns)
    assert outcomes(exposition) == {("outbound", "completed"): n, ("inbound", "completed"): n}
    assert after["ActiveOpens"] - before["ActiveOpens"] == n
    assert after["PassiveOpens"] - before["PassiveOpens"] == n
    value = exposition.value
    # Sequence space, as the kernel counts it: the client's SYN and each side's FIN count one byte when
    # acknowledged; the server's FIN reached the clients' TIME_WAIT sockets, not their full sockets.
    assert value("sockdiag_tcp_closed_sent_bytes_total", family=fam, direction="outbound") == sent + 2 * n
    assert value("sockdiag_tcp_closed_received_bytes_total", family=fam, direction="outbound") == replied
    assert value("sockdiag_tcp_closed_sent_bytes_total", family=fam, direction="inbound") == replied + n
    assert value("sockdiag_tcp_closed_received_bytes_total", family=fam, direction="inbound") == sent + n
    assert value("sockdiag_tcp_closed_retransmitted_segments_total", family=fam, direction="outbound") == 0
    segments = sum(value(f"sockdiag_tcp_closed_{way}_segments_total", family=fam, direction=d)
                   for way in ("sent", "received") for d in ("outbound", "inbound"))
    assert segments > 4 * n
    address = f"[{host}]:{PORT}" if family == socket.AF_INET6 else f"{host}:{PORT}"
    assert value("sockdiag_listener_tcp_connections_closed_total", family=fam, address=address,
                 outcome="completed") == n
    assert value("sockdiag_listener_tcp_closed_received_bytes_total", family=fam, address=address) == sent + n
    assert value("sockdiag_port_group_tcp_connections_closed_total", port_group="web", family=fam,
                 direction="inbound", outcome="completed") == n
    rtt = exposition.select("sockdiag_tcp_closed_rtt_seconds_count")
    assert sum(rtt.values()) == 2 * n


def test_resets_each_way(netns):
    """A local abort (SO_LINGER 0) and a close with unread data are resets where they happen; the peer that
    received the RST and had read everything cannot be told from a clean close (the documented limit)."""
    server = listen(netns)
    flows = Flows(netns)
    linger0 = struct.pack("ii", 1, 0)
    # 1. the server aborts
    client = connect(netns, ("127.0.0.1", PORT))
    conn, _ = server.accept()
    client.sendall(b"a" * 10)
    read_exactly(conn, 10)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
    conn.close()
    with pytest.raises(ConnectionResetError):
        client.recv(10)
    client.close()
    e = flows.until(lambda e: closed(e) >= 2)
    assert outcomes(e) == {("inbound", "reset"): 1, ("outbound", "completed"): 1}
    # 2. the server closes with 100 bytes it never read
    client = connect(netns, ("127.0.0.1", PORT))
    conn, _ = server.accept()
    client.sendall(b"b" * 100)
    assert select.select([conn], [], [], 5)[0]  # the bytes are in the server's receive queue
    conn.close()
    with pytest.raises(ConnectionResetError):
        client.recv(10)
    client.close()
    e = flows.until(lambda e: closed(e) >= 4)
    assert outcomes(e) == {("inbound", "reset"): 2, ("outbound", "completed"): 2}
    # 3. the client aborts
    client = connect(netns, ("127.0.0.1", PORT))
    conn, _ = server.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
    client.close()
    with pytest.raises(ConnectionResetError):
        conn.recv(10)
    conn.close()
    e = flows.until(lambda e: closed(e) >= 6)
    assert outcomes(e) == {("inbound", "reset"): 2, ("outbound", "completed"): 2, ("outbound", "reset"): 1,
                           ("inbound", "completed"): 1}
    assert e.value("sockdiag_listener_tcp_connections_closed_total", address=f"127.0.0.1:{PORT}",
                   outcome="reset") == 2


def test_refused_connects_blocking_and_not(netns):
    flows = Flows(netns)
    before = snmp(netns)
    blocking = netns.run(socket.socket)
    with pytest.raises(ConnectionRefusedError):
        blocking.connect(("127.0.0.1", 9))
    blocking.close()
    nonblocking = netns.run(socket.socket)
    nonblocking.setblocking(False)
    nonblocking.connect_ex(("127.0.0.1", 9))
    assert select.select([], [nonblocking], [], 5)[1]  # the connect has failed
    assert nonblocking.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 111  # ECONNREFUSED
    nonblocking.close()
    e = flows.until(lambda e: closed(e) >= 2)
    assert outcomes(e) == {("outbound", "refused"): 2}
    assert snmp(netns)["AttemptFails"] - before["AttemptFails"] == 2


@pytest.fixture
def link(netns):
    """netns (10.77.0.1) joined to a second namespace (10.77.0.2) by a TUN link the test controls."""
    peer = NetNS()
    tun = TunLink(netns, peer)
    try:
        yield tun, peer
    finally:
        tun.close()
        peer.delete()


def test_unanswered_connects_blocking_and_not(netns, link):
    tun, peer = link
    tun.blackhole = True  # every SYN is lost
    flows = Flows(netns)
    blocking = netns.run(socket.socket)
    blocking.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)  # one retransmission, then ETIMEDOUT (~3 s)
    with pytest.raises(TimeoutError):
        blocking.connect((tun.b, PORT))
    blocking.close()
    gave_up = netns.run(socket.socket)
    gave_up.setblocking(False)
    gave_up.connect_ex((tun.b, PORT))
    time.sleep(0.3)  # the application's own connect timeout, before any retransmission
    gave_up.close()
    e = flows.until(lambda e: closed(e) >= 2)
    assert outcomes(e) == {("outbound", "unanswered"): 2}
    assert e.value("sockdiag_tcp_closed_retransmitted_segments_total", direction="outbound", family="inet") == 0, \
        "a blocking connect that failed is disconnected: the kernel clears its counters"


def test_an_established_connection_that_times_out(netns, link):
    tun, peer = link
    server = listen(peer, tun.b)
    flows = Flows(netns)
    before = snmp(netns)
    client = connect(netns, (tun.b, PORT), options={(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT): 1000})
    conn, _ = server.accept()
    peer.keep.append(conn)
    client.sendall(b"hello")
    read_exactly(conn, 5)
    tun.blackhole = True  # the path dies
    client.sendall(b"are you there?")
    client.settimeout(10)
    with pytest.raises(TimeoutError):
        client.recv(10)  # ETIMEDOUT once TCP_USER_TIMEOUT has passed without an acknowledgment
    client.close()
    e = flows.until(lambda e: closed(e) >= 1)
    assert outcomes(e) == {("outbound", "timeout"): 1}
    retransmitted = e.value("sockdiag_tcp_closed_retransmitted_segments_total", direction="outbound", family="inet")
    assert retransmitted > 0
    assert retransmitted == snmp(netns)["RetransSegs"] - before["RetransSegs"]
    assert e.value("sockdiag_tcp_closed_retransmitted_bytes_total", direction="outbound", family="inet") > 0


def test_rtt_at_close_through_a_20ms_path(netns):
    peer = NetNS()
    tun = TunLink(netns, peer, delay=0.010)  # 10 ms each way
    try:
        server = listen(peer, tun.b)
        flows = Flows(netns)
        for _ in range(5):
            client = connect(netns, (tun.b, PORT))
            conn, _ = server.accept()
            client.sendall(b"ping" * 100)
            read_exactly(conn, 400)
            conn.sendall(b"pong")
            read_exactly(client, 4)
            client.close()
            peer.keep.append(conn)
        e = flows.until(lambda e: closed(e) >= 5)
        buckets = {dict(k)["le"]: v for k, v in e.select("sockdiag_tcp_closed_rtt_seconds_bucket",
                                                         direction="outbound").items()}
        assert buckets["0.01"] == 0 and buckets["0.1"] == 5, buckets  # every one between 10 and 100 ms
        mean = e.value("sockdiag_tcp_closed_rtt_seconds_sum", direction="outbound") / 5
        assert 0.019 < mean < 0.03
    finally:
        tun.close()
        peer.delete()


def test_retransmissions_over_a_lossy_path_equal_the_kernels_count(netns):
    peer = NetNS()
    tun = TunLink(netns, peer, loss=0.08, seed=7)
    try:
        server = listen(peer, tun.b)
        flows = Flows(netns)
        before = snmp(netns)
        for _ in range(8):
            client = connect(netns, (tun.b, PORT))
            conn, _ = server.accept()
            peer.keep.append(conn)
            sender = threading.Thread(target=client.sendall, args=(b"x" * 200_000,))
            sender.start()
            read_exactly(conn, 200_000)
            sender.join()
            client.close()
        e = flows.until(lambda e: closed(e) >= 8, timeout=60)
        after = snmp(netns)
        assert outcomes(e) == {("outbound", "completed"): 8}
        retransmitted = e.value("sockdiag_tcp_closed_retransmitted_segments_total", direction="outbound",
                                family="inet")
        assert tun.dropped > 0 and retransmitted > 0
        assert retransmitted == after["RetransSegs"] - before["RetransSegs"]
        sent = e.value("sockdiag_tcp_closed_sent_bytes_total", direction="outbound", family="inet")
        assert sent == 8 * (200_000 + 2)
    finally:
        tun.close()
        peer.delete()


def test_udp_sockets_closed_by_family(netns):
    flows = Flows(netns)
    for family, count in ((socket.AF_INET, 3), (socket.AF_INET6, 2)):
        for _ in range(count):
            netns.run(socket.socket, family, socket.SOCK_DGRAM).close()
    e = flows.until(lambda e: sum(e.select("sockdiag_udp_sockets_closed_total").values()) >= 5)
    assert e.value("sockdiag_udp_sockets_closed_total", family="inet") == 3
    assert e.value("sockdiag_udp_sockets_closed_total", family="inet6") == 2


def test_listeners_beyond_the_cap_are_other_and_keep_their_series(netns):
    first, second = listen(netns, port=8001), listen(netns, port=8002)
    flows = Flows(netns, {"flows": {"max_listeners": 1}})
    for server, port in ((first, 8001), (second, 8002), (first, 8001)):
        client = connect(netns, ("127.0.0.1", port))
        conn, _ = server.accept()
        client.close()
        conn.close()
    e = flows.until(lambda e: closed(e, direction="inbound") >= 3)
    listeners = {dict(k)["address"]: v for k, v in e.select("sockdiag_listener_tcp_connections_closed_total").items()}
    assert listeners == {"127.0.0.1:8001": 2, "other": 1}


def test_a_flood_beyond_the_buffer_is_counted_as_overruns(netns, caplog):
    server = listen(netns)
    flows = Flows(netns, {"flows": {"receive_buffer_bytes": 65536}})
    subscriber = flows.scraper.plan.own.background("flows", None).subscriber
    n = 2000
    with subscriber.lock:  # the drain thread stops at its next batch; the kernel fills the buffer and drops
        for _ in range(n):
            client = connect(netns, ("127.0.0.1", PORT))
            conn, _ = server.accept()
            client.close()
            conn.close()
        time.sleep(0.5)
    with caplog.at_level(logging.WARNING):
        e = flows.until(lambda e: e.value("sockdiag_flow_event_overruns_total") > 0)
        e = flows.scrape()
    assert e.value("sockdiag_flow_event_overruns_total") > 0
    assert 0 < closed(e) < 2 * n
    assert e.value("sockdiag_flow_subscriber_up") == 1
    assert e.value("sockdiag_scrape_collector_success", collector="flows") == 1
    lost = [r.getMessage() for r in caplog.records if "dropped destroy events" in r.getMessage()]
    assert len(lost) == 1, lost  # once per change, not once per scrape
    client = connect(netns, ("127.0.0.1", PORT))  # and it goes on counting
    conn, _ = server.accept()
    client.close()
    conn.close()
    total = closed(e)
    assert closed(flows.until(lambda e: closed(e) >= total + 2)) == total + 2


def test_unprivileged_gives_the_same_counts(netns):
    server = listen(netns)
    root, nobody = Flows(netns), Flows(netns, unprivileged=True)
    for _ in range(10):
        client = connect(netns, ("127.0.0.1", PORT))
        conn, _ = server.accept()
        client.sendall(b"z" * 1000)
        read_exactly(conn, 1000)
        client.close()
        conn.close()
    a = root.until(lambda e: closed(e) >= 20)
    b = nobody.until(lambda e: closed(e) >= 20)
    names = (CLOSED, "sockdiag_tcp_closed_sent_bytes_total", "sockdiag_tcp_closed_received_bytes_total",
             "sockdiag_listener_tcp_connections_closed_total")
    for name in names:
        assert a.select(name) == b.select(name), name
    assert closed(b, direction="inbound") == 10


def test_namespace_mode_counts_each_namespace_apart_and_stops_when_one_goes(caplog):
    keep, doomed = NetNS(), NetNS()
    try:
        servers = {ns.name: listen(ns) for ns in (keep, doomed)}
        scraper = make_scraper({"namespaces": {"named": True, "include": [keep.name, doomed.name]}})
        try:
            def churn(ns, count):
                for _ in range(count):
                    client = connect(ns, ("127.0.0.1", PORT))
                    conn, _ = servers[ns.name].accept()
                    client.close()
                    conn.close()

            def scrape():
                return Exposition(render(scraper))

            scrape()  # opens each namespace's subscriber, inside it
            churn(keep, 3)
            churn(doomed, 5)
            deadline = time.monotonic() + 15
            while True:
                e = scrape()
                if (closed(e, netns=keep.name) >= 6 and closed(e, netns=doomed.name) >= 10) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert outcomes(e, netns=keep.name) == {("outbound", "completed"): 3, ("inbound", "completed"): 3}
            assert outcomes(e, netns=doomed.name) == {("outbound", "completed"): 5, ("inbound", "completed"): 5}
            gc.collect()  # subscribers other tests dropped stop now, not in the middle of this
            threads = {t for t in threading.enumerate() if t.name == "destroy events"}
            servers.pop(doomed.name).close()
            doomed.keep.clear()
            doomed.delete()
            with caplog.at_level(logging.WARNING):
                after = scrape()
            assert not after.select(CLOSED, netns=doomed.name)
            assert closed(after, netns=keep.name) == 6
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
            stopped = threads - set(threading.enumerate())
            assert len(stopped) == 1  # the deleted namespace's subscriber, and only it
            churn(keep, 1)
            deadline = time.monotonic() + 15
            while closed(scrape(), netns=keep.name) < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert closed(scrape(), netns=keep.name) == 8
        finally:
            scraper.close()
    finally:
        keep.delete()
        doomed.delete()


def test_a_refused_subscription_is_said_and_asked_again(netns, monkeypatch, caplog):
    """A group the kernel does not have (as on kernels without destroy groups): sockdiag_flow_subscriber_up 0, one
    log line, the collector and the others still succeed; once the kernel accepts, counting starts."""
    from sockdiag_exporter.collectors import flows as collector
    from sockdiag_exporter.diag.events import DESTROY_GROUPS, Subscriber

    # SKNLGRP 99 does not exist: setsockopt(NETLINK_ADD_MEMBERSHIP) fails with EINVAL
    monkeypatch.setattr(collector, "Subscriber", lambda decoder, size: Subscriber(decoder, size, (99,)))
    server = listen(netns)
    with caplog.at_level(logging.WARNING):
        flows = Flows(netns, {"collectors": {"tcp": True}})
        first, second = flows.scrape(), flows.scrape()
    for e in (first, second):
        assert e.value("sockdiag_flow_subscriber_up") == 0
        assert e.value("sockdiag_scrape_collector_success", collector="flows") == 1
        assert e.value("sockdiag_scrape_collector_success", collector="tcp") == 1
        assert not e.select("sockdiag_flow_events_total")
    said = [r.getMessage() for r in caplog.records if "no destroy events" in r.getMessage()]
    assert len(said) == 1 and "Invalid argument" in said[0], said
    flows.scraper.plan.own.background("flows", None).subscriber.groups = DESTROY_GROUPS  # the next one subscribes
    assert flows.scrape().value("sockdiag_flow_subscriber_up") == 1
    client = connect(netns, ("127.0.0.1", PORT))
    conn, _ = server.accept()
    client.close()
    conn.close()
    assert closed(flows.until(lambda e: closed(e) >= 2)) == 2
