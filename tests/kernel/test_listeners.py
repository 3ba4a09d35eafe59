"""Per-listener accept queues, drops and half-open connections on the real kernel, against ss -l, ss state
syn-recv and nstat; the fullest socket of an SO_REUSEPORT group; the series cap and its "other" fold."""

import re
import socket
import subprocess
import time

import pytest

from helpers import Peer, connect_nonblocking, scrape, scrape_and_overview, settle, wait_until

from sockdiag_exporter import summary


def listener(ns, family, host, backlog, pending, reuseport=False, device=None):
    """A listener with `pending` connections that are never accepted; returns its local address."""
    s = socket.socket(family, socket.SOCK_STREAM)
    ns.keep.append(s)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if device:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    s.bind(host if isinstance(host, tuple) else (host, 0))
    s.listen(backlog)
    target = ("::1" if family == socket.AF_INET6 else "127.0.0.1",) + s.getsockname()[1:2]
    for _ in range(pending):
        c = socket.socket(family, socket.SOCK_STREAM)
        ns.keep.append(c)
        c.connect(target)
    return s.getsockname()


def ss_listeners(ns, *args):
    """address -> (Recv-Q, Send-Q) from ss -l, summed per address (SO_REUSEPORT groups)."""
    result = {}
    for _, state, rq, wq, rest in ns.ss("-l", *args):
        assert state == "LISTEN"
        length, limit = result.get(rest[0], (0, 0))
        result[rest[0]] = (length + rq, limit + wq)
    return result


def ours(exposition, **labels):
    length = exposition.select("sockdiag_listener_accept_queue_length", **labels)
    limit = exposition.select("sockdiag_listener_accept_queue_limit", **labels)
    return {dict(k)["address"]: (int(v), int(limit[k])) for k, v in length.items()}


def test_tcp_listeners_match_ss(netns):
    def work():
        a = listener(netns, socket.AF_INET, "0.0.0.0", 8, 3)
        b = listener(netns, socket.AF_INET6, ("::", a[1]), 5, 2)  # same port, v6 only: a second listener
        listener(netns, socket.AF_INET, "127.0.0.1", 16, 0)
        shared = listener(netns, socket.AF_INET, "127.0.0.1", 10, 0, reuseport=True)
        listener(netns, socket.AF_INET, shared, 20, 0, reuseport=True)
        listener(netns, socket.AF_INET, "127.0.0.1", 4, 1, device="lo")
        return a, b

    netns.run(work)
    settle(netns)
    exposition = scrape(netns, "tcp")
    theirs = ss_listeners(netns, "-t", "-n")
    assert ours(exposition, protocol="tcp") == theirs
    assert len(theirs) == 5  # 0.0.0.0 and [::] on one port are two listeners; the reuseport pair is one address
    port = next(a for a in theirs if a.startswith("0.0.0.0:")).split(":")[1]
    assert theirs[f"0.0.0.0:{port}"] == (3, 8) and theirs[f"[::]:{port}"] == (2, 5)
    shared = [a for a, v in theirs.items() if v == (0, 30)]
    assert len(shared) == 1
    assert exposition.value("sockdiag_listener_sockets", address=shared[0]) == 2
    assert any("%lo:" in a for a in theirs)
    # the per-family sums agree with the per-listener series
    assert exposition.value("sockdiag_accept_queue_length", family="inet", protocol="tcp") == 3 + 1
    assert exposition.value("sockdiag_accept_queue_limit", family="inet6", protocol="tcp") == 5
    assert exposition.value("sockdiag_sockets", family="inet", protocol="tcp", state="listen") == 5


def test_unix_listeners_match_ss(netns, tmp_path):
    def work():
        path = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path.bind(str(tmp_path / "l.sock"))
        path.listen(6)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        abstract.bind(f"\0sdtest-abstract-{id(abstract)}")
        abstract.listen(9)
        seq = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        seq.bind(str(tmp_path / "seq.sock"))
        seq.listen(2)
        netns.keep.extend([path, abstract, seq])
        for target, kind, n in ((path.getsockname(), socket.SOCK_STREAM, 4),
                                (abstract.getsockname(), socket.SOCK_STREAM, 2),
                                (seq.getsockname(), socket.SOCK_SEQPACKET, 1)):
            for _ in range(n):
                c = socket.socket(socket.AF_UNIX, kind)
                c.connect(target)
                netns.keep.append(c)

    netns.run(work)
    exposition = scrape(netns, "unix")
    theirs = ss_listeners(netns, "-x")
    assert ours(exposition, family="unix") == theirs
    assert theirs[str(tmp_path / "l.sock")] == (4, 6)
    assert [v for a, v in theirs.items() if a.startswith("@sdtest-abstract-")] == [(2, 9)]
    assert exposition.value("sockdiag_listener_accept_queue_length", socket_type="seqpacket",
                            address=str(tmp_path / "seq.sock")) == 1


def test_listener_cap_keeps_the_fullest_and_folds_the_rest(netns):
    def work():
        for backlog, pending in ((10, 1), (4, 3), (8, 8), (100, 2), (50, 0)):
            listener(netns, socket.AF_INET, "127.0.0.1", backlog, pending)

    netns.run(work)
    settle(netns)
    exposition = scrape(netns, "tcp", config={"listeners": {"max_series": 2}})
    kept = ours(exposition, protocol="tcp")
    # fill ratios: 8/8, 3/4, 1/10, 2/100, 0/50
    assert sorted(v for a, v in kept.items() if a != "other") == [(3, 4), (8, 8)]
    assert kept["other"] == (1 + 2 + 0, 10 + 100 + 50)
    assert exposition.value("sockdiag_listeners_folded", family="inet", protocol="tcp") == 3
    assert exposition.value("sockdiag_listener_sockets", address="other") == 3
    assert not exposition.select("sockdiag_listeners_folded", family="inet6", protocol="tcp")  # nothing folded


# --- drops, the fullest socket of an SO_REUSEPORT group, half-open connections ----------------------------------

def ss_listening_sockets(ns, *args):
    """(address, Recv-Q, Send-Q, drops) of every listening socket: ss -l -n -m, drops from skmem's d
    (SK_MEMINFO_DROPS)."""
    out = subprocess.run(["ss", "-N", ns.name, "-H", "-l", "-n", "-m", *args], check=True, capture_output=True,
                         text=True).stdout
    rows = []
    for line in out.splitlines():
        if "skmem:(" in line:
            rows[-1] = rows[-1][:3] + (int(re.search(r"[(,]d(\d+)", line).group(1)),)
        else:
            _, rq, wq, address = line.split()[:4]
            rows.append((address, int(rq), int(wq), None))
    return rows


def nstat(ns, *names):
    """Absolute values of kernel counters in the namespace (nstat -a: since the namespace was made)."""
    return {line.split()[0]: int(line.split()[1]) for line in ns.sh("nstat -az " + " ".join(names)).splitlines()[1:]}


def quiescent(ns, oracle, ours, timeout=30.0):
    """(oracle's answer, ours) from a window in which the oracle gave the same answer before and after ours: SYNs
    and SYN-ACKs that a full listener drops are sent again after 1, 2, 4 ... s, so such windows come."""
    deadline = time.monotonic() + timeout
    while True:
        before = oracle()
        mine = ours()
        if oracle() == before:
            return before, mine
        assert time.monotonic() < deadline, "the namespace never held still"


def test_a_stuck_socket_of_a_reuseport_group_is_not_averaged_away(netns):
    """Two SO_REUSEPORT listeners on one address, as nginx workers have: one accepts everything, the other never
    does (a stopped worker). The address's summed fill looks harmless; its fullest socket is over the limit and
    its drops count the SYNs the stuck socket dropped."""
    def work():
        busy = socket.socket()
        stuck = socket.socket()
        for s, backlog in ((busy, 64), (stuck, 4)):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", 8080))
            s.listen(backlog)
        netns.keep.extend([busy, stuck])
        return busy

    busy = netns.run(work)
    connect_nonblocking(netns, socket.AF_INET, ("127.0.0.1", 8080), 40)
    assert wait_until(lambda: any(s[1] == 5 for s in ss_listening_sockets(netns, "-t")))  # the stuck one is full
    busy.setblocking(False)
    try:
        while True:
            netns.keep.append(busy.accept()[0])
    except BlockingIOError:
        pass

    def oracle():
        return sorted(ss_listening_sockets(netns, "-t")), nstat(netns, "TcpExtListenDrops")["TcpExtListenDrops"]

    (sockets, listen_drops), exposition = quiescent(netns, oracle, lambda: scrape(netns, "tcp"))
    labels = dict(address="127.0.0.1:8080", protocol="tcp")
    assert [(rq, wq) for _, rq, wq, _ in sockets] == [(0, 64), (5, 4)]
    assert exposition.value("sockdiag_listener_accept_queue_length", **labels) == 5
    assert exposition.value("sockdiag_listener_accept_queue_limit", **labels) == 68  # 7% full: looks fine
    assert exposition.value("sockdiag_listener_accept_queue_max_fill_ratio", **labels) == 5 / 4
    assert exposition.value("sockdiag_listener_sockets", **labels) == 2
    drops = sum(d for _, _, _, d in sockets)
    assert drops > 0 and drops == listen_drops
    assert exposition.value("sockdiag_listener_drops_total", **labels) == drops


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
                         ids=["inet", "inet6"])
def test_listener_drops_match_ss_and_nstat(netns, family, host):
    """A listener with backlog 1 and more connects than it takes: its drops are ss's d and the kernel's
    ListenDrops; the other listener's are 0: a series in the full profile, none in the default one. The summary
    (and the landing page, from the same overview) shows both listeners with their drops."""
    address = netns.run(listener, netns, family, host, 1, 0)
    netns.run(listener, netns, family, host, 16, 2)
    connect_nonblocking(netns, family, (host, address[1]), 12)

    def oracle():
        return ss_listening_sockets(netns, "-t"), nstat(netns, "TcpExtListenDrops")["TcpExtListenDrops"]

    def both_profiles():
        return scrape_and_overview(netns, "tcp"), scrape(netns, "tcp", config={"profile": "full"})

    (sockets, listen_drops), ((default, view), full) = quiescent(netns, oracle, both_profiles)
    theirs = {a: d for a, _, _, d in sockets}
    assert len(theirs) == 2 and sorted(theirs.values())[0] == 0
    assert max(theirs.values()) > 0 and sum(theirs.values()) == listen_drops
    ours = {dict(k)["address"]: v for k, v in full.select("sockdiag_listener_drops_total").items()}
    assert ours == theirs
    ours = {dict(k)["address"]: v for k, v in default.select("sockdiag_listener_drops_total").items()}
    assert ours == {a: d for a, d in theirs.items() if d}
    assert {row.address: row.drops for row in view.listeners} == theirs
    dropping = max(theirs, key=theirs.get)
    assert view.listeners[0].address == dropping  # over its limit: the fullest
    line = next(line for line in summary.text(view) if line.endswith(" " + dropping))
    assert line.split()[3] == str(theirs[dropping])  # bar, fill, queue/limit, dropped


def test_half_open_connections_per_listening_address_match_ss(netns):
    """Real SYNs from a peer that never completes the handshake: request sockets on a wildcard listener (their
    address is the one the SYN was sent to), on a listener bound to one address, on an IPv6 listener that takes
    IPv4 too (v4-mapped), counted per listening address as ss -ta shows them (SYN-RECV) per port."""
    def work():
        made = {}
        for name, family, address in (("any", socket.AF_INET, ("0.0.0.0", 0)), ("one", socket.AF_INET, ("10.9.0.1", 0)),
                                      ("dual", socket.AF_INET6, ("::", 0)), ("idle", socket.AF_INET, ("0.0.0.0", 0))):
            s = socket.socket(family)
            s.bind(address)
            s.listen(64)
            netns.keep.append(s)
            made[name] = s.getsockname()[1]
        return made

    peer = Peer(netns)
    try:
        ports = netns.run(work)
        peer.connect(socket.AF_INET, ("10.9.0.1", ports["any"]), 3)
        peer.connect(socket.AF_INET, ("10.9.0.1", ports["one"]), 2)
        peer.connect(socket.AF_INET, ("10.9.0.1", ports["dual"]), 4)
        peer.connect(socket.AF_INET6, ("fd00::1", ports["dual"]), 5)
        def oracle():
            by_port = {}
            for _, state, _, _, rest in netns.ss("-t", "-a"):
                if state == "SYN-RECV":
                    port = int(rest[0].rpartition(":")[2])
                    by_port[port] = by_port.get(port, 0) + 1
            return by_port

        assert wait_until(lambda: sum(oracle().values()) == 14)

        theirs, (exposition, view) = quiescent(netns, oracle, lambda: scrape_and_overview(netns, "tcp"))
    finally:
        peer.delete()
    ours = {dict(k)["address"]: v for k, v in exposition.select("sockdiag_listener_half_open_connections").items()}
    assert ours == {f"0.0.0.0:{ports['any']}": 3, f"10.9.0.1:{ports['one']}": 2, f"[::]:{ports['dual']}": 9}
    assert {row.address: row.half_open for row in view.listeners if row.half_open} == ours  # the summary's, the page's
    assert theirs == {ports["any"]: 3, ports["one"]: 2, ports["dual"]: 9}
    assert exposition.value("sockdiag_sockets", family="inet", protocol="tcp", state="syn_recv") == 5
    assert exposition.value("sockdiag_sockets", family="inet6", protocol="tcp", state="syn_recv") == 9
    # a listener without any has no half-open series (absence is 0)
    assert not exposition.select("sockdiag_listener_half_open_connections", address=f"0.0.0.0:{ports['idle']}")
