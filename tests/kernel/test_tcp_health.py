"""Live TCP health (tcp_health) from real connections in fresh network namespaces, against `ss -ti` summed the same
way on a quiescent namespace: the port filter selects what ss selects with the same expression, the RTT of a 20 ms
TUN path lands in its bucket, retransmissions over a lossy path equal ss's, a receiver that stops reading makes the
sender rwnd-limited with a zero window, and closed + live traffic counters equal what was sent and never drop."""

import re
import socket
import subprocess
import threading
import time

import pytest

from helpers import Exposition, NetNS, listen, make_scraper, render, scrape, settle, wait_until
from tunlink import TunLink

from sockdiag_exporter.diag import constants as c
from sockdiag_exporter.diag import health
from sockdiag_exporter.diag.flows import listening_table
from sockdiag_exporter.diag.netlink import DiagSocket

PORT = 8000
CONNECTED = "state established state fin-wait-1 state fin-wait-2 state close-wait state last-ack state closing"


class Health:
    """A scraper with tcp_health on, made and scraped inside a namespace (its flows subscriber is that one's)."""

    def __init__(self, ns, config=None, flows=True):
        config = dict(config or {})
        config["tcp_health"] = dict(config.get("tcp_health", {}), enabled=True)
        config["collectors"] = {"flows": flows}
        self.ns = ns
        self.scraper = ns.run(make_scraper, config, ("flows", "tcp_health") if flows else ("tcp_health",))
        ns.keep.append(self.scraper)

    def scrape(self) -> Exposition:
        return Exposition(self.ns.run(render, self.scraper))


def ss_info(ns, expression: str, states: str = "state established") -> list:
    """One dict per socket of `ss -tin <states> <expression>`: the key:value fields of its info line, numbers as
    floats (rtt and retrans as two: rtt, rttvar; retrans_now, retrans); ss leaves out fields that are 0."""
    out = subprocess.run(["ss", "-N", ns.name, "-H", "-tin", *states.split(), expression], check=True,
                         capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        if not line.startswith("\t"):
            found.append({})
            continue
        info = found[-1]
        for key, value in re.findall(r"(\w+):([\d.]+(?:/[\d.]+)?)(?:ms)?", line):
            if key == "rtt":
                info["rtt"], info["rttvar"] = map(float, value.split("/"))
            elif key == "retrans":
                info["retrans_now"], info["retrans"] = map(float, value.split("/"))
            elif "/" not in value:
                info[key] = float(value)
        info.setdefault("snd_wnd", 0)  # ss prints snd_wnd only when it is not 0 (this kernel has the field)
    return found


def pairs(server_ns, server, client_ns, address, n, family=socket.AF_INET):
    """n connections to server from client_ns: [(client, accepted)], kept with the namespaces."""
    made = []
    for _ in range(n):
        client = client_ns.run(socket.create_connection, address)
        conn, _ = server.accept()
        client_ns.keep.append(client)
        server_ns.keep.append(conn)
        made.append((client, conn))
    return made


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        assert chunk, "connection closed early"
        data += chunk
    return data


def health_dump(ns, family, ports, listening=()):
    def dump():
        diag = DiagSocket()
        try:
            return diag.decode(health.request(family, ports), "test", lambda seq: health.HealthDecoder(
                seq, "test", (100, 1000), listening_table(listening))).tally
        finally:
            diag.close()

    return ns.run(dump)


@pytest.mark.parametrize("ports", [
    [("local", 8000, 8000)],
    [("local", 8000, 8000), ("remote", 9000, 9000)],
    [("remote", 8001, 8003), ("local", 9001, 9001)],
    [("local", p, p) for p in range(7990, 8010, 2)] + [("remote", 9000, 9002)],
])
def test_the_port_filter_selects_what_ss_selects_with_the_same_expression(netns, ports):
    for port in (8000, 8001, 8002, 8003, 8004, 9000, 9001, 9002):
        server = listen(netns, "127.0.0.1", port)
        for client, _ in pairs(netns, server, netns, ("127.0.0.1", port), 2):
            client.sendall(b"x" * 10)
        client.close()  # one half-closed connection per port: FIN-WAIT-2 at the client, CLOSE-WAIT at the server
    settle(netns)
    expression = health.ss_expression(ports)
    expected = len(ss_info(netns, expression, CONNECTED))
    assert expected > 0
    assert health_dump(netns, c.AF_INET, ports).sockets == expected
    assert health_dump(netns, c.AF_INET, ()).sockets == len(ss_info(netns, "", CONNECTED)) == 8 * 4


def test_a_long_filter_is_accepted_by_the_kernel(netns):
    """The kernel's audit follows every `yes` and checks every `no` lands on an op: hundreds of alternatives."""
    server = listen(netns, "127.0.0.1", 8000)
    pairs(netns, server, netns, ("127.0.0.1", 8000), 3)
    ports = [("local", p, p) for p in range(1000, 9000, 17)] + [("remote", p, p + 1) for p in range(20000, 30000, 31)]
    ports.append(("local", 8000, 8000))
    settle(netns)
    assert len(health.port_filter(ports)) > 8000
    assert health_dump(netns, c.AF_INET, ports).sockets == 3 == len(ss_info(netns, "( sport = :8000 )"))


def test_only_connections_that_count_are_dumped(netns):
    """Without tcp_health.port_groups the filter is the listening ports and every group's ports: an outbound
    connection outside every group is not even asked for (its tcp_info would count nowhere)."""
    for port, n in ((8000, 3), (9000, 2), (9100, 4)):
        pairs(netns, listen(netns, "127.0.0.1", port), netns, ("127.0.0.1", port), n)
    settle(netns)
    e = Health(netns, {"port_groups": {"db": {"remote": [9000]}}}, flows=False).scrape()
    expected = ss_info(netns, "( sport = :8000 or sport = :9000 or sport = :9100 or dport = :9000 )", CONNECTED)
    assert e.value("sockdiag_tcp_health_sockets") == len(expected) == 3 + 2 + 4 + 2
    assert len(ss_info(netns, "", CONNECTED)) == 2 * (3 + 2 + 4)
    assert e.value("sockdiag_listener_tcp_live_rtt_seconds_gcount", address="127.0.0.1:9100") == 4
    assert e.value("sockdiag_port_group_tcp_live_rtt_seconds_gcount", port_group="db", direction="outbound") == 2
    assert not e.select("sockdiag_port_group_tcp_live_rtt_seconds_gcount", direction="inbound")


def test_unprivileged_gives_the_same_rows(netns):
    server = listen(netns, "127.0.0.1")
    pairs(netns, server, netns, ("127.0.0.1", PORT), 3)
    settle(netns)
    config = {"tcp_health": {"enabled": True}, "port_groups": {"web": {"local": [PORT]}}}
    root, nobody = (scrape(netns, "tcp_health", unprivileged=u, config=config) for u in (False, True))
    rows = [(e.select("sockdiag_listener_tcp_live_rtt_seconds_gcount"),
             e.select("sockdiag_port_group_tcp_live_sent_segments")) for e in (root, nobody)]
    assert rows[0] == rows[1] and list(rows[0][0].values()) == [3]


@pytest.fixture
def link(netns):
    """netns (10.77.0.1, the exporter's, with the listeners) joined to a peer namespace (10.77.0.2, the clients)
    by a 20 ms TUN link (10 ms each way)."""
    peer = NetNS()
    tun = TunLink(netns, peer, delay=0.010)
    try:
        yield tun, peer
    finally:
        tun.close()
        peer.delete()


def _histogram(e: Exposition, name: str, **labels) -> dict:
    return {dict(k)["le"]: v for k, v in e.select(name + "_bucket", **labels).items()}


def test_rtt_of_a_20ms_path_in_its_bucket_and_equal_to_ss(netns, link):
    tun, peer = link
    server = listen(netns, tun.a)
    made = pairs(netns, server, peer, (tun.a, PORT), 5)
    for client, conn in made:
        conn.sendall(b"ping" * 100)
        read_exactly(client, 400)
        client.sendall(b"pong")
        read_exactly(conn, 4)
    scraper = Health(netns, {"port_groups": {"web": {"local": [PORT]}}})
    settle(netns)
    e = scraper.scrape()
    address = f"{tun.a}:{PORT}"
    for name, labels in (("sockdiag_listener_tcp_live_rtt_seconds", {"address": address}),
                         ("sockdiag_port_group_tcp_live_rtt_seconds", {"port_group": "web", "direction": "inbound"})):
        buckets = _histogram(e, name, family="inet", **labels)
        assert buckets["0.01"] == 0 and buckets["0.1"] == 5 and buckets["+Inf"] == 5, buckets
    rows = ss_info(netns, f"( sport = :{PORT} )")
    assert len(rows) == 5
    rtt_us = sum(round(row["rtt"] * 1000) for row in rows)
    assert round(e.value("sockdiag_listener_tcp_live_rtt_seconds_gsum", address=address) * 1e6) == rtt_us
    assert 5 * 19_000 < rtt_us < 5 * 40_000
    min_rtt_us = sum(round(row["minrtt"] * 1000) for row in rows)
    assert round(e.value("sockdiag_listener_tcp_live_min_rtt_seconds_gsum", address=address) * 1e6) == min_rtt_us
    assert _histogram(e, "sockdiag_listener_tcp_live_min_rtt_seconds", address=address)["0.01"] == 0


def test_retransmissions_over_a_lossy_path_equal_the_sum_of_ss(netns):
    peer = NetNS()
    tun = TunLink(netns, peer, delay=0.002, loss=0.08, seed=11)
    try:
        server = listen(netns, tun.a)
        made = pairs(netns, server, peer, (tun.a, PORT), 6)
        scraper = Health(netns)
        threads = [threading.Thread(target=conn.sendall, args=(b"x" * 300_000,)) for _, conn in made]
        for thread in threads:
            thread.start()
        for client, _ in made:
            read_exactly(client, 300_000)
        for thread in threads:
            thread.join()
        # Quiescent once every byte is acknowledged (the senders' unacked goes to 0 and stays).
        assert wait_until(lambda: all(row.get("unacked", 0) == 0 for row in ss_info(netns, f"( sport = :{PORT} )")),
                          timeout=30)
        settle(netns)
        e = scraper.scrape()
        rows = ss_info(netns, f"( sport = :{PORT} )")
        address = f"{tun.a}:{PORT}"
        retransmitted = e.value("sockdiag_listener_tcp_live_retransmitted_segments", address=address)
        assert tun.dropped > 0 and retransmitted > 0
        assert retransmitted == sum(row.get("retrans", 0) for row in rows)
        assert e.value("sockdiag_listener_tcp_live_retransmitted_unacked_segments", address=address) == 0
        assert e.value("sockdiag_listener_tcp_live_lost_segments", address=address) == 0
        assert e.value("sockdiag_listener_tcp_live_unacked_segments", address=address) == 0
        assert e.value("sockdiag_listener_tcp_live_sent_segments", address=address) == sum(
            row["segs_out"] for row in rows)
        busy_ms = sum(row.get("busy", 0) for row in rows)
        assert busy_ms > 0
        # ss prints whole milliseconds of each connection's microseconds
        busy_us = round(e.value("sockdiag_listener_tcp_live_busy_seconds", address=address) * 1e6)
        assert 0 <= busy_us // 1000 - busy_ms < len(rows)
    finally:
        tun.close()
        peer.delete()


def test_a_path_that_dies_puts_the_sender_in_loss_recovery(netns, link):
    """ca_state against the kernel's own getsockopt(TCP_INFO) of the socket (ss does not print it)."""
    tun, peer = link
    server = listen(netns, tun.a)
    ((client, conn),) = pairs(netns, server, peer, (tun.a, PORT), 1)
    conn.sendall(b"a" * 1000)
    read_exactly(client, 1000)
    scraper = Health(netns, flows=False)
    address = f"{tun.a}:{PORT}"
    assert scraper.scrape().value("sockdiag_listener_tcp_live_loss_recovery_connections", address=address) == 0
    tun.blackhole = True
    conn.setblocking(False)
    conn.send(b"b" * 20000)

    def ca_state():
        return conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[1]

    assert wait_until(lambda: ca_state() == 4, timeout=10)  # TCP_CA_Loss: the retransmission timer fired
    e = scraper.scrape()
    assert ca_state() == 4
    assert e.value("sockdiag_listener_tcp_live_loss_recovery_connections", address=address) == 1
    assert e.value("sockdiag_listener_tcp_live_unacked_segments", address=address) > 0
    tun.blackhole = False
    assert wait_until(lambda: ca_state() == 0, timeout=15)  # recovered once acknowledgments come back
    assert scraper.scrape().value("sockdiag_listener_tcp_live_loss_recovery_connections", address=address) == 0


def test_a_receiver_that_stops_reading_makes_the_sender_rwnd_limited_with_a_zero_window(netns):
    server = listen(netns, "127.0.0.1")
    client = netns.run(socket.socket)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, filled fast
    client.connect(("127.0.0.1", PORT))
    netns.keep.append(client)
    conn, _ = server.accept()
    netns.keep.append(conn)
    scraper = Health(netns)
    address = f"127.0.0.1:{PORT}"
    writer = threading.Thread(target=conn.sendall, args=(b"y" * 2_000_000,))  # blocks: the client reads nothing
    writer.start()
    try:
        assert wait_until(lambda: any(row.get("snd_wnd") == 0 for row in ss_info(netns, f"( sport = :{PORT} )")),
                          timeout=10)
        e = scraper.scrape()
        assert e.value("sockdiag_listener_tcp_live_zero_window_connections", address=address) == 1
        assert e.value("sockdiag_listener_tcp_live_notsent_bytes", address=address) > 0
        time.sleep(0.2)  # limited for a while: a measurable time
    finally:
        client.settimeout(10)
        read_exactly(client, 2_000_000)
        writer.join()
    settle(netns)
    e = scraper.scrape()
    (row,) = ss_info(netns, f"( sport = :{PORT} )")
    assert row["rwnd_limited"] >= 200
    for metric, key in (("rwnd_limited_seconds", "rwnd_limited"), ("busy_seconds", "busy"),
                        ("sndbuf_limited_seconds", "sndbuf_limited")):
        ours_us = round(e.value(f"sockdiag_listener_tcp_live_{metric}", address=address) * 1e6)
        assert ours_us // 1000 == row.get(key, 0), metric  # ss: whole milliseconds
    assert e.value("sockdiag_listener_tcp_live_zero_window_connections", address=address) == 0
    assert e.value("sockdiag_listener_tcp_live_notsent_bytes", address=address) == 0


def test_traffic_counters_equal_what_was_sent_across_closing_connections_and_never_drop(netns):
    server = listen(netns, "127.0.0.1")
    scraper = Health(netns, {"port_groups": {"web": {"local": [PORT]}}})
    address = f"127.0.0.1:{PORT}"
    received, closed, open_pairs, seen = 0, 0, [], []
    names = ("sockdiag_listener_tcp_received_bytes_total", "sockdiag_listener_tcp_sent_bytes_total",
             "sockdiag_port_group_tcp_received_bytes_total")

    def values(e):
        return (e.value(names[0], address=address), e.value(names[1], address=address),
                e.value(names[2], port_group="web", direction="inbound"))

    for r in range(8):
        for i, (client, conn) in enumerate(pairs(netns, server, netns, ("127.0.0.1", PORT), 3)):
            size = 1000 * (r + 1) + i
            client.sendall(b"q" * size)
            read_exactly(conn, size)
            received += size
            open_pairs.append((client, conn))
        for client, conn in open_pairs[:2]:  # the oldest close: the client first (its FIN counts 1 received)
            client.close()
            conn.close()
            received += 1
            closed += 1
        del open_pairs[:2]
        seen.append(values(scraper.scrape()))
    assert all(a <= b for earlier, later in zip(seen, seen[1:]) for a, b in zip(earlier, later)), seen
    assert wait_until(lambda: values(scraper.scrape())[0] == received, timeout=10), (values(scraper.scrape()),
                                                                                    received)
    final = values(scraper.scrape())
    assert final[2] == received
    assert final[1] == closed, "the server sent no data: only its FIN, acknowledged (1) where it closed"
    assert all(a <= b for a, b in zip(seen[-1], final))
