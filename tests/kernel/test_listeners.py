"""Per-listener accept queues on the real kernel, against ss -l; the series cap and its "other" fold."""

import socket

from helpers import scrape, settle


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
