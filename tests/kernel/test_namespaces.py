"""Several network namespaces at once, each reported exactly (equal to ss -N), a vanished one dropped quietly,
the cap and its "other", process namespaces, and the capability check."""

import logging
import os
import socket
import subprocess
import sys
import threading

import pytest

from helpers import Exposition, NetNS, drop_thread_privileges, make_scraper, nonzero, render, ss_by_state, ss_rows

from sockdiag_exporter.namespaces import NamespaceSet, own_namespace

OWN = own_namespace().label  # "host", or "self" where pid 1's namespace cannot be compared


def populate(ns: NetNS, connections: int) -> None:
    """A listener and connections to it, some with unread data."""
    def work():
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        ns.keep.append(server)
        for i in range(connections):
            c = socket.create_connection(server.getsockname())
            s, _ = server.accept()
            ns.keep.extend([c, s])
            if i % 3 == 0:
                c.send(b"n" * (i + 1))

    ns.run(work)


def fill_accept_queue(ns: NetNS) -> None:
    """A listener with backlog 1 holding the two connections it can queue: at its limit."""
    def work():
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        ns.keep.append(server)
        for _ in range(2):
            ns.keep.append(socket.create_connection(server.getsockname()))

    ns.run(work)

OWN = own_namespace().label  # "host", or "self" where pid 1's namespace cannot be compared


@pytest.fixture
def namespaces():
    made = []

    def make(connections: int):
        ns = NetNS()
        made.append(ns)
        populate(ns, connections)
        return ns

    yield make
    for ns in made:
        ns.delete()


def collect(config: dict) -> Exposition:
    scraper = make_scraper(config)
    exposition = Exposition(render(scraper))
    exposition.scraper = scraper
    return exposition


def tcp_by_state(exposition, netns):
    return nonzero(exposition.by_state(netns=netns, family="inet", protocol="tcp"))


def test_every_named_namespace_exactly_and_a_vanished_one_quietly(namespaces, caplog):
    populations = {ns.name: n for ns, n in ((namespaces(n), n) for n in (2, 5, 9))}
    doomed = namespaces(3)
    pattern = f"sdtest-{os.getpid()}-*"
    config = {"namespaces": {"named": True, "include": [pattern]}, "collectors": {"sctp": False}}
    with caplog.at_level(logging.WARNING):
        first = collect(config)
    for name in list(populations) + [doomed.name]:
        assert tcp_by_state(first, name) == ss_by_state(ss_rows(name, "-t", "-a", "-4"), "close"), name
    for name, n in populations.items():
        assert first.value("sockdiag_sockets", netns=name, protocol="tcp", family="inet", state="established") == 2 * n
        assert first.value("sockdiag_netns_up", netns=name) == 1
    assert first.select("sockdiag_sockets", netns=OWN)  # the exporter's own namespace is there too
    doomed.delete()
    with caplog.at_level(logging.WARNING):
        second = collect(config)
    assert not second.select("sockdiag_sockets", netns=doomed.name)
    assert not second.select("sockdiag_netns_up", netns=doomed.name)
    assert all(second.value("sockdiag_netns_up", netns=name) == 1 for name in populations)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_namespace_deleted_between_scrapes_of_one_scraper(namespaces, caplog):
    keep, doomed = namespaces(1), namespaces(4)
    scraper = make_scraper({"namespaces": {"named": True, "include": [keep.name, doomed.name]}})
    first = Exposition(render(scraper))
    assert first.select("sockdiag_sockets", netns=doomed.name)
    sockets_before = len(scraper.plan.namespaces.contexts)
    doomed.delete()
    with caplog.at_level(logging.WARNING):
        second = Exposition(render(scraper))
    assert not second.select("sockdiag_sockets", netns=doomed.name)
    assert second.select("sockdiag_sockets", netns=keep.name)
    assert len(scraper.plan.namespaces.contexts) == sockets_before - 1  # its cached diag socket was closed
    assert second.value("sockdiag_netlink_dumps_total") > first.value("sockdiag_netlink_dumps_total")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_cap_keeps_the_namespace_in_trouble_and_the_largest_and_folds_the_rest(namespaces):
    made = sorted((namespaces(0) for _ in range(4)), key=lambda ns: ns.name)
    populations = dict(zip((ns.name for ns in made), (4, 1, 3, 0)))
    for ns in made:
        populate(ns, populations[ns.name])
    fill_accept_queue(made[-1])  # the one that sorts last, and the smallest: its accept queue full
    exposition = collect({"namespaces": {"named": True, "include": [ns.name for ns in made], "max_namespaces": 3},
                          "collectors": {"sctp": False}, "profile": "full"})
    kept = {OWN, made[-1].name, made[0].name}  # the exporter's own, the one in trouble, the largest
    folded = [made[1].name, made[2].name]
    assert {dict(k)["netns"] for k in exposition.select("sockdiag_netns_up")} == kept
    assert exposition.value("sockdiag_netns_folded") == 2
    full = exposition.select("sockdiag_listener_accept_queue_length", netns=made[-1].name)
    assert max(full.values()) == 2  # kept with its full queue in sight, although it sorts last and is the smallest
    other = exposition.value("sockdiag_sockets", netns="other", family="inet", protocol="tcp", state="established")
    assert other == sum(2 * populations[name] for name in folded)
    # kernel-wide facts once, from the exporter's own namespace; no zero-valued series from the others
    assert exposition.value("sockdiag_diag_handler_available", netns=OWN, family="inet", protocol="tcp") == 1
    assert not exposition.select("sockdiag_diag_handler_available", netns="other")
    assert not [v for k, v in exposition.select("sockdiag_sockets").items() if dict(k)["netns"] != OWN and v == 0]


def test_dense_namespaces_keep_every_zero(namespaces):
    ns = namespaces(1)
    exposition = collect({"namespaces": {"named": True, "include": [ns.name], "sparse": False},
                          "collectors": {"sctp": False}, "profile": "full"})
    assert exposition.value("sockdiag_sockets", netns=ns.name, family="inet", protocol="udp",
                            state="unconnected") == 0
    assert exposition.value("sockdiag_diag_handler_available", netns=ns.name, family="inet", protocol="udp") == 1


def test_process_namespaces_are_found_by_inode(tmp_path):
    code = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 4321)); s.listen(11); "
            "print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen(["unshare", "--net", sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        inode = os.stat(f"/proc/{proc.pid}/ns/net").st_ino
        exposition = collect({"namespaces": {"processes": True, "include": [f"netns-{inode}"]}})
        label = f"netns-{inode}"
        assert exposition.value("sockdiag_listener_accept_queue_limit", netns=label, address="127.0.0.1:4321") == 11
        info = exposition.select("sockdiag_netns_info", netns=label)
        assert len(info) == 1 and dict(next(iter(info)))["inode"] == str(inode)
    finally:
        proc.kill()
        proc.wait()


def test_without_cap_sys_admin_the_feature_is_off_and_said_once(caplog):
    result = {}

    def unprivileged():
        drop_thread_privileges()
        result["set"] = NamespaceSet(True, True, (), (), 10, lambda: None)

    with caplog.at_level(logging.WARNING):
        thread = threading.Thread(target=unprivileged)
        thread.start()
        thread.join()
    assert result["set"].enabled == {"named_namespaces": False, "process_namespaces": False}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "needs CAP_SYS_ADMIN" in warnings[0]


@pytest.mark.parametrize("count", [1, 6])
def test_parallel_and_sequential_collection_agree(namespaces, count):
    """The same quiescent namespaces collected by one worker and by four give the same samples: with fewer
    namespaces than workers (collector by collector) and with more (one task per namespace, every collector in
    turn). The exporter's own namespace is left out of the comparison: it is not quiescent; so are the exporter's
    own sock_diag sockets in each namespace: more workers keep more of them open (19 against 8 with one namespace)."""
    made = {namespaces(2 + i).name for i in range(count)}
    base = {"namespaces": {"named": True, "include": [f"sdtest-{os.getpid()}-*"]}, "collectors": {"sctp": False}}

    def ours(exposition):
        return {key: value for key, value in exposition.samples.items() if dict(key[1]).get("netns") in made
                and dict(key[1]).get("protocol") != "sock_diag"}

    for _ in range(5):  # a namespace's socket memory can still move right after it was populated
        sequential = ours(collect({**base, "collection": {"workers": 1}}))
        parallel = ours(collect({**base, "collection": {"workers": 4}}))
        if sequential == parallel:
            break
    assert sequential == parallel
    assert {dict(key[1])["netns"] for key in parallel} == made
    assert len(parallel) > 20 * count  # a namespace's share of samples, not an empty comparison
