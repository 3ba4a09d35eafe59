"""Real-kernel differential tests for unix, netlink and packet sockets against ss in a fresh namespace."""

import os
import socket
import struct
from collections import defaultdict

from helpers import nonzero, scrape, settle, ss_state

from sockdiag_exporter.collectors.names import netlink_protocol_name

UNIX_NETIDS = {"u_str": "stream", "u_dgr": "dgram", "u_seq": "seqpacket"}


def test_unix_matches_ss(netns, tmp_path):
    keep = netns.keep

    def unix(kind):
        s = socket.socket(socket.AF_UNIX, kind)
        keep.append(s)
        return s

    def work():
        path_listener = unix(socket.SOCK_STREAM)
        path_listener.bind(str(tmp_path / "listener.sock"))
        path_listener.listen(4)
        for _ in range(2):
            unix(socket.SOCK_STREAM).connect(str(tmp_path / "listener.sock"))  # 2 of 4 waiting
        abstract = unix(socket.SOCK_STREAM)
        abstract.bind(f"\0sdtest-{os.getpid()}-{id(abstract)}")
        abstract.listen(7)
        unix(socket.SOCK_STREAM).connect(abstract.getsockname())  # 1 of 7 waiting
        unix(socket.SOCK_STREAM)  # never bound or connected
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        keep.extend([a, b])
        a.send(b"s" * 500)  # 500 unread bytes on b
        seq_listener = unix(socket.SOCK_SEQPACKET)
        seq_listener.bind(str(tmp_path / "seq.sock"))
        seq_listener.listen(3)
        c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep.extend([c, d])
        c.send(b"q" * 70)
        receiver = unix(socket.SOCK_DGRAM)
        receiver.bind(str(tmp_path / "dgram.sock"))
        sender = unix(socket.SOCK_DGRAM)
        for size in (100, 200):
            sender.sendto(b"g" * size, str(tmp_path / "dgram.sock"))
        e, f = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        keep.extend([e, f])
        e.send(b"h" * 30)

    netns.run(work)
    exposition = scrape(netns, "unix")
    theirs = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for netid, state, rq, wq, _ in netns.ss("-x", "-a"):
        row = theirs[UNIX_NETIDS[netid]][ss_state(state, "unconnected")]
        row[0] += 1
        row[1] += rq
        row[2] += wq
    for sock_type, states in theirs.items():
        assert nonzero(exposition.by_state(family="unix", socket_type=sock_type)) == dict(states), sock_type
    assert theirs["stream"]["listen"] == [2, 3, 11]
    assert theirs["stream"]["established"][1] == 500
    assert theirs["seqpacket"]["established"][1] == 70 and theirs["seqpacket"]["listen"] == [1, 0, 3]
    assert theirs["dgram"]["unconnected"][1] > 0 and theirs["dgram"]["established"][1] > 0
    assert theirs["stream"]["unconnected"][0] == 1
    assert set(exposition.by_state(family="unix", socket_type="dgram")) == {"established", "unconnected"}


NETLINK_GETLINK_DUMP = struct.pack("=IHHIIBxxxiII", 32, 18, 0x301, 1, 0, 0, 0, 0, 0)  # RTM_GETLINK, NLM_F_DUMP


def test_netlink_matches_ss(netns):
    def work():
        idle = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        idle.bind((0, 0))
        unread = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        unread.bind((0, 0))
        unread.send(NETLINK_GETLINK_DUMP)  # the reply stays unread: receive memory in use
        generic = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 16)
        generic.connect((0, 0))
        netns.keep.extend([idle, unread, generic])

    netns.run(work)
    settle(netns)
    exposition = scrape(netns, "netlink")
    theirs = defaultdict(lambda: [0, 0, 0])
    for _, _, rq, wq, rest in netns.ss("-f", "netlink", "-a"):
        protocol = netlink_protocol_name(int(rest[0].split(":")[0]))
        row = theirs[protocol]
        row[0] += 1
        if protocol != "sock_diag":  # ss's own socket and ours hold their dumps in flight
            row[1] += rq
            row[2] += wq
    ours = defaultdict(lambda: [0, 0, 0])
    for i, metric in enumerate(("sockdiag_sockets", "sockdiag_receive_queue_bytes", "sockdiag_send_queue_bytes")):
        for key, v in exposition.select(metric, family="netlink").items():
            protocol = dict(key)["protocol"]
            if i == 0 or protocol != "sock_diag":
                ours[protocol][i] += int(v)
    assert nonzero(ours) == dict(theirs)
    assert theirs["route"][0] >= 3 and theirs["route"][1] > 0
    assert exposition.value("sockdiag_sockets", family="netlink", protocol="generic", socket_type="dgram",
                            state="connected") == 1


def test_packet_matches_ss(netns):
    def work():
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        raw.bind(("lo", 0x0003))
        cooked = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        cooked.bind(("lo", 0x0800))
        netns.keep.extend([raw, cooked])
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.sendto(b"p" * 100, ("127.0.0.1", 9))  # seen by both packet sockets, never read
        udp.close()

    netns.run(work)
    settle(netns)
    exposition = scrape(netns, "packet")
    theirs = defaultdict(lambda: [0, 0, 0])
    for netid, _, rq, wq, _ in netns.ss("-0", "-a"):
        row = theirs[{"p_raw": "raw", "p_dgr": "dgram"}[netid]]
        row[0] += 1
        row[1] += rq
        row[2] += wq
    ours = {t: exposition.by_state(family="packet", socket_type=t)[""] for t in ("raw", "dgram")}
    assert ours == dict(theirs)
    assert theirs["raw"][1] > 0 and theirs["dgram"][1] > 0
    assert exposition.value("sockdiag_sockets", family="packet", socket_type="raw", protocol="all") == 1
    assert exposition.value("sockdiag_sockets", family="packet", socket_type="dgram", protocol="ip") == 1


def test_unprivileged_exporter_sees_what_root_sees(netns, tmp_path):
    """The exporter runs unprivileged: replies then lack CAP_NET_ADMIN-only attributes, the numbers must not."""
    from test_inet_vs_ss import build_stream_population

    build_stream_population(netns, socket.AF_INET, "127.0.0.1")

    def work():
        a, b = socket.socketpair()
        netns.keep.extend([a, b])
        a.send(b"x" * 300)

    netns.run(work)
    collectors = ("tcp", "udp", "raw", "unix", "packet")
    root = scrape(netns, *collectors)
    nobody = scrape(netns, *collectors, unprivileged=True)
    assert netns.run(lambda: __import__("os").geteuid()) == 0  # only that one thread dropped privileges
    assert nobody.select("sockdiag_sockets") == root.select("sockdiag_sockets")
    for metric in ("sockdiag_receive_queue_bytes", "sockdiag_send_queue_bytes", "sockdiag_accept_queue_length",
                   "sockdiag_accept_queue_limit"):
        assert nobody.select(metric) == root.select(metric), metric
    assert nobody.value("sockdiag_sockets", family="inet", protocol="tcp", state="established") > 5
