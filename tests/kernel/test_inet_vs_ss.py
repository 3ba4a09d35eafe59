"""Real-kernel differential tests: inet sockets built in a fresh namespace, exporter numbers == ss numbers."""

import socket
import struct

import pytest

from helpers import (Exposition, fill_send_queue, make_scraper, nonzero, render, scrape, settle, ss_by_state,
                     wait_until)

from sockdiag_exporter.diag.mmsg import Vector
from sockdiag_exporter.diag.netlink import RING, DiagSocket

FAMILIES = [(socket.AF_INET, "inet", "127.0.0.1", "-4"), (socket.AF_INET6, "inet6", "::1", "-6")]
IPPROTO_UDPLITE = 136
IPPROTO_MPTCP = 262


def build_stream_population(ns, family, host, proto=0):
    """Listeners with un-accepted connections, data in both queues, close_wait/fin_wait2, time_wait, syn_sent."""
    keep = ns.keep

    def sock():
        s = socket.socket(family, socket.SOCK_STREAM, proto)
        keep.append(s)
        return s

    def listener(backlog):
        s = sock()
        s.bind((host, 0))
        s.listen(backlog)
        return s

    def connect(lst):
        c = sock()
        c.connect(lst.getsockname()[:2])
        return c

    def work():
        pending = listener(8)
        for _ in range(3):
            connect(pending)  # never accepted: accept queue length 3 of 8

        server = listener(16)

        def pair():
            c = connect(server)
            s, _ = server.accept()
            keep.append(s)
            return c, s

        c1, s1 = pair()
        c1.sendall(b"x" * 1000)  # 1000 unread bytes on s1
        c2, s2 = pair()
        s2.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        fill_send_queue(c2)  # s2 never reads: bytes queued on both sides
        c3, s3 = pair()
        c3.shutdown(socket.SHUT_WR)  # c3 fin_wait2, s3 close_wait
        c4, s4 = pair()
        c4.close()
        wait_until(lambda: s4.recv(1) == b"")
        s4.close()  # c4 time_wait (orphaned)

        full = listener(0)
        connect(full)  # fills the 0-backlog queue (the kernel allows one)
        late = sock()
        late.setblocking(False)
        try:
            late.connect(full.getsockname()[:2])  # SYN dropped while the queue is full: syn_sent
        except BlockingIOError:
            pass

    ns.run(work)
    settle(ns)


@pytest.mark.parametrize("family,family_name,host,ss_flag", FAMILIES, ids=["inet", "inet6"])
def test_tcp_matches_ss(netns, family, family_name, host, ss_flag):
    build_stream_population(netns, family, host)
    ours = scrape(netns, "tcp").by_state(family=family_name, protocol="tcp")
    theirs = ss_by_state(netns.ss("-t", "-a", ss_flag), "close")
    assert nonzero(ours) == theirs
    assert {"listen", "established", "time_wait", "close_wait", "fin_wait2", "syn_sent"} <= set(theirs)
    assert ours["listen"][1] >= 4 and ours["listen"][2] == 8 + 16 + 0  # 3 + 1 waiting; limits summed
    assert ours["established"][1] > 1000 and ours["established"][2] > 0  # unread and unacknowledged bytes
    # every state sock_diag reports is present, zero or not; new_syn_recv, which it never reports, is not
    assert set(ours) == {"established", "syn_sent", "syn_recv", "fin_wait1", "fin_wait2", "time_wait", "close",
                         "close_wait", "last_ack", "listen", "closing"}


@pytest.mark.parametrize("family,family_name,host,ss_flag", FAMILIES, ids=["inet", "inet6"])
def test_mptcp_matches_ss(netns, family, family_name, host, ss_flag):
    build_stream_population(netns, family, host, IPPROTO_MPTCP)
    exposition = scrape(netns, "mptcp", "tcp")
    ours = exposition.by_state(family=family_name, protocol="mptcp")
    theirs = ss_by_state(netns.ss("-M", "-a", ss_flag), "close")
    assert nonzero(ours) == theirs
    assert {"listen", "established"} <= set(theirs)
    # MPTCP subflows are TCP sockets: the tcp collector sees them as ss -t does
    assert nonzero(exposition.by_state(family=family_name, protocol="tcp")) == ss_by_state(
        netns.ss("-t", "-a", ss_flag), "close")


def build_dgram_population(ns, family, host, proto):
    def work():
        receiver = socket.socket(family, socket.SOCK_DGRAM, proto)
        receiver.bind((host, 0))
        sender = socket.socket(family, socket.SOCK_DGRAM, proto)
        connected = socket.socket(family, socket.SOCK_DGRAM, proto)
        connected.connect(receiver.getsockname()[:2])
        ns.keep.extend([receiver, sender, connected])
        for size in (100, 200, 300):
            sender.sendto(b"d" * size, receiver.getsockname()[:2])
        connected.send(b"c" * 50)

    ns.run(work)
    settle(ns)


@pytest.mark.parametrize("family,family_name,host,ss_flag", FAMILIES, ids=["inet", "inet6"])
def test_udp_matches_ss(netns, family, family_name, host, ss_flag):
    build_dgram_population(netns, family, host, socket.IPPROTO_UDP)
    ours = scrape(netns, "udp").by_state(family=family_name, protocol="udp")
    theirs = ss_by_state(netns.ss("-u", "-a", ss_flag), "unconnected")
    assert nonzero(ours) == theirs
    assert theirs["unconnected"][0] == 2 and theirs["unconnected"][1] > 650 and theirs["established"][0] == 1


def proc_net_table(ns, name):
    """An independent reading of /proc/net/<name>: state -> [count, rx_queue, tx_queue]."""
    result = {}
    for line in ns.sh(f"cat /proc/net/{name}").splitlines()[1:]:
        fields = line.split()
        state = {1: "established", 7: "unconnected"}[int(fields[3], 16)]
        tx, rx = (int(v, 16) for v in fields[4].split(":"))
        row = result.setdefault(state, [0, 0, 0])
        row[0] += 1
        row[1] += rx
        row[2] += tx
    return result


@pytest.mark.parametrize("family,family_name,host,suffix", [
    (socket.AF_INET, "inet", "127.0.0.1", ""), (socket.AF_INET6, "inet6", "::1", "6")], ids=["inet", "inet6"])
def test_udplite_matches_proc(netns, family, family_name, host, suffix):
    """ss has no UDP-Lite option: /proc/net/udplite{,6} is the oracle."""
    build_dgram_population(netns, family, host, IPPROTO_UDPLITE)
    ours = scrape(netns, "udplite").by_state(family=family_name, protocol="udplite")
    theirs = proc_net_table(netns, "udplite" + suffix)
    assert nonzero(ours) == theirs
    assert theirs["unconnected"][1] > 0


def icmp_echo(ident):
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"ping"
    total = sum(struct.unpack("!%dH" % (len(header) // 2), header))
    total = (total >> 16) + (total & 0xFFFF)
    checksum = ~(total + (total >> 16)) & 0xFFFF
    return header[:2] + struct.pack("!H", checksum) + header[4:]


@pytest.mark.parametrize("family,family_name,host,ss_flag", FAMILIES, ids=["inet", "inet6"])
def test_raw_matches_ss(netns, family, family_name, host, ss_flag):
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6

    def work():
        raw = socket.socket(family, socket.SOCK_RAW, proto)
        connected = socket.socket(family, socket.SOCK_RAW, proto)
        connected.connect((host, 0))
        netns.keep.extend([raw, connected])
        echo = icmp_echo(7) if family == socket.AF_INET else b"\x80\x00\x00\x00\x00\x07\x00\x01ping"
        raw.sendto(echo, (host, 0))  # every ICMP socket receives the request and the reply

    netns.run(work)
    settle(netns)
    exposition = scrape(netns, "raw")
    ours = exposition.by_state(family=family_name, protocol="raw")
    theirs = ss_by_state(netns.ss("-w", "-a", ss_flag), "unconnected")
    assert nonzero(ours) == theirs
    assert theirs["unconnected"][0] == 1 and theirs["established"][0] == 1 and theirs["unconnected"][1] > 0
    available = exposition.value("sockdiag_diag_handler_available", family=family_name, protocol="raw")
    source = "sock_diag" if available else "procfs"
    assert exposition.value("sockdiag_socket_source_info", family=family_name, protocol="raw", source=source) == 1


def test_bound_only_tcp_socket_is_not_dumped(netns):
    """Bound, never listening or connected: like `ss -a`, the exporter does not ask for these (see requests.py)."""

    def work():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        netns.keep.append(s)

    netns.run(work)
    ours = scrape(netns, "tcp").by_state(family="inet", protocol="tcp")
    assert ours["close"][0] == 0 == len(netns.ss("-t", "-a", "-4"))


def test_thousands_of_sockets_stream_through_many_buffers_like_ss(netns, monkeypatch):
    """Enough sockets for many receive buffers and long uniform runs (the run path), broken by TIME_WAIT; the same
    numbers with the run path switched off."""
    from sockdiag_exporter.diag import runs as run_path

    def work():
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(4096)
        for i in range(2700):
            c = socket.create_connection(server.getsockname())
            s, _ = server.accept()
            if i % 27 == 0:
                c.close()  # client closes first: time_wait, a shorter message among the others
                s.close()
                continue
            if i % 50 == 1:
                c.send(b"u" * i)
            netns.keep.extend([c, s])
        netns.keep.append(server)

    netns.run(work)
    settle(netns)
    runs = []
    original = run_path.Runs._tally
    monkeypatch.setattr(run_path.Runs, "_tally", lambda self, *a: runs.append(a[-1]) or original(self, *a))
    fast = scrape(netns, "tcp").by_state(family="inet", protocol="tcp")
    assert sum(runs) > 2000  # thousands of messages went through the run path
    runs.clear()

    def tcp_with(**diag):
        exposition = Exposition(netns.run(lambda: render(make_scraper(collectors=["tcp"],
                                                                      make_diag=lambda: DiagSocket(**diag)))))
        return nonzero(exposition.by_state(family="inet", protocol="tcp"))

    slow = tcp_with(min_run=0)
    assert not runs
    # each receive path: several datagrams a recvmmsg() (the dumps run to 20 datagrams), and one a recv() beside
    # a receiving thread
    batches = []
    receive = Vector.receive
    monkeypatch.setattr(Vector, "receive", lambda self, *a: batches.append(receive(self, *a)) or batches[-1])
    batched = tcp_with(pipelined=False)
    assert max(batches) == RING
    batches.clear()
    pipelined = tcp_with(pipelined=True)
    assert not batches
    theirs = ss_by_state(netns.ss("-t", "-a", "-4"), "close")
    assert nonzero(fast) == slow == batched == pipelined == theirs
    assert theirs["established"][0] == 5200 and theirs["time_wait"][0] == 100
    assert theirs["established"][1] > 0


def test_split_dumps_on_the_workers_agree_with_one_dump_on_one_worker(netns, monkeypatch):
    """A TCP family with many TIME_WAIT sockets among its others is dumped in two parts from the next collection on
    (full sockets; minisockets), the parts and the other family at once on the collection's workers
    (WorkerPool.share): the same samples as one dump per family on one worker, and ss agrees."""
    from sockdiag_exporter.collectors import inet

    monkeypatch.setattr(inet, "SPLIT_MIN", 256)  # the bench's shares, without its 100k sockets

    def work():
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            server = socket.socket(family)
            server.bind((host, 0))
            server.listen(512)
            netns.keep.append(server)
            for i in range(400 if family == socket.AF_INET else 100):
                c = socket.create_connection(server.getsockname()[:2])
                s, _ = server.accept()
                if family == socket.AF_INET and i % 4 == 0:
                    c.close()  # client closes first: time_wait, interleaved with the others in the hash
                    s.close()
                    continue
                if i % 7 == 1:
                    c.send(b"q" * i)
                netns.keep.extend([c, s])

    netns.run(work)
    settle(netns)
    dumped = []
    original = inet.InetCollector._dump
    monkeypatch.setattr(inet.InetCollector, "_dump",
                        lambda self, ctx, fam, states, *rest: dumped.append((fam[1], states))
                        or original(self, ctx, fam, states, *rest))

    def collections(workers: int):
        """The tcp samples of a first collection (one dump per family) and a second one (IPv4 split)."""
        scraper = netns.run(lambda: make_scraper({"collection": {"workers": workers}}, ["tcp"]))
        return [{k: v for k, v in Exposition(netns.run(lambda: render(scraper))).samples.items()
                 if dict(k[1]).get("protocol") == "tcp" or "ephemeral" in k[0] or "timewait" in k[0]
                 or "listener" in k[0]} for _ in range(2)]

    one, one_split = collections(1)
    one_dumps = list(dumped)
    dumped.clear()
    shared, shared_split = collections(4)
    assert one_split == one == shared == shared_split
    theirs = ss_by_state(netns.ss("-t", "-a", "-4"), "close")
    assert theirs["time_wait"][0] == 100 and theirs["established"][0] == 600
    assert {k: v for k, v in shared_split.items() if k[0] == "sockdiag_sockets" and ("family", "inet") in k[1]
            and v} == {("sockdiag_sockets", (("family", "inet"), ("protocol", "tcp"), ("socket_type", "stream"),
                                             ("state", state))): float(row[0]) for state, row in theirs.items()}
    # both runs split IPv4 from their second collection on (its TIME_WAIT share: 100 of 700), never IPv6
    for dumps in (one_dumps, dumped):
        assert [states for family, states in dumps if family == "inet"] == [
            inet.ALL_BUT_LISTEN, inet.ALL_BUT_LISTEN & ~inet.MINISOCKETS, inet.ALL_BUT_LISTEN & inet.MINISOCKETS]
        assert [states for family, states in dumps if family == "inet6"] == [inet.ALL_BUT_LISTEN] * 2
