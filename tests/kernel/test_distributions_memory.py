"""Queue-depth histograms, SK_MEMINFO sums against ss -m, and real UDP drops and TCP listen overflows."""

import re
import socket
from collections import defaultdict

from helpers import scrape, settle, ss_state, wait_until

from sockdiag_exporter.config import FULL_BUCKETS, MEMORY_FIELDS

BOUNDS = ["0.0", "1024.0", "4096.0", "16384.0", "65536.0", "262144.0", "1.048576e+06", "4.194304e+06",
          "1.6777216e+07", "+Inf"]


def histogram(exposition, name, **labels):
    buckets = {dict(k)["le"]: v for k, v in exposition.select(name + "_bucket", **labels).items()}
    return ([buckets[le] for le in BOUNDS], exposition.value(name + "_gcount", **labels),
            exposition.value(name + "_gsum", **labels))


def test_receive_queue_histogram_puts_sockets_in_the_right_buckets(netns):
    unread = [0, 0, 500, 1024, 2000, 60000]

    def work():
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        netns.keep.append(server)
        accepted = []
        for n in unread:
            c = socket.create_connection(server.getsockname())
            s, _ = server.accept()
            netns.keep.extend([c, s])
            if n:
                c.sendall(b"r" * n)
            accepted.append(s)
        return accepted

    accepted = netns.run(work)
    assert wait_until(lambda: [len(s.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)) if n else 0
                               for s, n in zip(accepted, unread)] == unread)
    exposition = scrape(netns, "tcp", config={"histograms": {"buckets": list(FULL_BUCKETS)}})
    buckets, count, total = histogram(exposition, "sockdiag_socket_receive_queue_bytes", family="inet",
                                      protocol="tcp")
    # 12 data sockets (6 clients with empty queues, 6 servers), the listener is not one
    assert count == 12 and buckets[-1] == 12
    assert buckets == [8, 10, 11, 11, 12, 12, 12, 12, 12, 12]  # 0 x8; 500, 1024 <= 1 KiB; 2000; 60000
    assert total == sum(unread) == sum(exposition.select("sockdiag_receive_queue_bytes", family="inet",
                                                         protocol="tcp").values())
    _, send_count, _ = histogram(exposition, "sockdiag_socket_send_queue_bytes", family="inet", protocol="tcp")
    assert send_count == 12


def test_histograms_can_be_configured_and_disabled(netns):
    def bound_udp():
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))  # an unbound one is in no hash: sock_diag does not see it
        return udp

    netns.keep.append(netns.run(bound_udp))
    exposition = scrape(netns, "udp", config={"histograms": {"buckets": [0, 100], "collectors": ["udp"]}})
    assert sorted(dict(k)["le"] for k in exposition.select("sockdiag_socket_receive_queue_bytes_bucket",
                                                           family="inet")) == ["+Inf", "0.0", "100.0"]
    disabled = scrape(netns, "udp", config={"histograms": {"enabled": False, "collectors": ["udp"]}})
    assert not disabled.select("sockdiag_socket_receive_queue_bytes_bucket")
    default = scrape(netns, "udp")  # udp is not among the default histograms' collectors
    assert not default.select("sockdiag_socket_receive_queue_bytes_bucket")


SKMEM = re.compile(r"skmem:\(r(\d+),rb(\d+),t(\d+),tb(\d+),f(\d+),w(\d+),o(\d+),bl(\d+),d(\d+)\)")
MEMORY_METRICS = ["sockdiag_receive_memory_bytes", "sockdiag_receive_buffer_bytes", "sockdiag_send_memory_bytes",
                  "sockdiag_send_buffer_bytes", "sockdiag_forward_alloc_bytes", "sockdiag_send_queued_memory_bytes",
                  "sockdiag_option_memory_bytes", "sockdiag_backlog_bytes", "sockdiag_dropped_packets"]


def ss_memory(ns, *args, unconnected="unconnected"):
    """state -> the nine skmem sums of ss -m."""
    out = ns.sh("ss -H -n -a -m " + " ".join(args))
    result = defaultdict(lambda: [0] * 9)
    state = None
    for line in out.splitlines():
        tokens = line.split()
        if tokens and not tokens[0].startswith("skmem") and tokens[0] not in ("u_str", "u_dgr", "u_seq"):
            state = ss_state(tokens[0], unconnected)
        elif tokens and tokens[0] in ("u_str", "u_dgr", "u_seq"):
            state = ss_state(tokens[1], unconnected)
        for match in SKMEM.finditer(line):
            row = result[state]
            for i, v in enumerate(match.groups()):
                row[i] += int(v)
    return dict(result)


def our_memory(exposition, **labels):
    result = defaultdict(lambda: [0] * 9)
    for i, name in enumerate(MEMORY_METRICS):
        for key, v in exposition.select(name, **labels).items():
            result[dict(key)["state"]][i] += int(v)
    return {state: row for state, row in result.items() if any(row) or state in ("established",)}


def test_udp_memory_and_real_drops_match_ss_and_the_counters(netns):
    def work():
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum: a few datagrams
        receiver.bind(("127.0.0.1", 0))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        netns.keep.extend([receiver, sender])
        for _ in range(200):
            sender.sendto(b"d" * 1000, receiver.getsockname())

    netns.run(work)
    settle(netns)
    exposition = scrape(netns, "udp", "netstat", config={"memory": {"fields": list(MEMORY_FIELDS)}})
    theirs = ss_memory(netns, "-u", "-4")
    ours = our_memory(exposition, family="inet", protocol="udp")
    assert {s: r for s, r in ours.items() if any(r)} == theirs
    drops = theirs["unconnected"][8]
    assert drops > 100
    assert exposition.value("sockdiag_udp_receive_buffer_errors_total", family="inet", protocol="udp") == drops
    assert exposition.value("sockdiag_udp_receive_errors_total", family="inet", protocol="udp") == drops


def test_unix_and_tcp_memory_match_ss_when_enabled(netns, tmp_path):
    def work():
        a, b = socket.socketpair()
        a.send(b"m" * 3000)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        c = socket.create_connection(server.getsockname())
        s, _ = server.accept()
        c.sendall(b"t" * 5000)
        netns.keep.extend([a, b, server, c, s])

    netns.run(work)
    settle(netns)
    config = {"memory": {"collectors": ["tcp", "unix"], "fields": list(MEMORY_FIELDS)}}
    exposition = scrape(netns, "tcp", "unix", config=config)
    unix = ss_memory(netns, "-x")
    assert unix["established"][2] > 0 and unix["established"][1] > 0  # unix charges data to the sender
    assert {s: r for s, r in our_memory(exposition, family="unix").items() if any(r)} == unix
    tcp = ss_memory(netns, "-t", "-4", unconnected="close")
    assert tcp["established"][0] > 0 and tcp["listen"][1] > 0
    assert {s: r for s, r in our_memory(exposition, family="inet", protocol="tcp").items() if any(r)} == tcp
    assert not scrape(netns, "tcp").select("sockdiag_receive_buffer_bytes")  # not fetched unless configured


def test_listen_overflow_counters_match_nstat(netns):
    def work():
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        netns.keep.append(server)
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(server.getsockname())
            except BlockingIOError:
                pass
            netns.keep.append(c)

    netns.run(work)
    settle(netns)
    exposition = scrape(netns, "netstat")
    nstat = dict(line.split()[:2] for line in netns.sh("nstat -az TcpExtListenOverflows TcpExtListenDrops")
                 .splitlines()[1:])
    assert int(nstat["TcpExtListenOverflows"]) > 0
    assert exposition.value("sockdiag_tcp_listen_overflows_total") == int(nstat["TcpExtListenOverflows"])
    assert exposition.value("sockdiag_tcp_listen_drops_total") == int(nstat["TcpExtListenDrops"])
