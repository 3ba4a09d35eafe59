"""TIME_WAIT minisockets on the real kernel: time_wait and the fin_wait2 of connections their application closed
are minisockets, a fin_wait2 socket still held open is a full socket; against /proc/net/sockstat's tw, ss's
timewait timers and net.ipv4.tcp_max_tw_buckets."""

import re
import socket

import pytest

from helpers import scrape, settle, wait_until


def sockstat_tw(ns):
    return int(re.search(r"\btw (\d+)", ns.sh("cat /proc/net/sockstat")).group(1))


def ss_timewait_timers(ns):
    """state -> sockets on the timewait timer (ss -tano shows timer:(timewait,...) for minisockets only)."""
    counts = {}
    for line in ns.sh("ss -H -t -a -n -o").splitlines():
        if "timer:(timewait," in line:
            state = line.split()[0]
            counts[state] = counts.get(state, 0) + 1
    return counts


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
                         ids=["inet", "inet6"])
def test_minisockets_match_sockstat_and_ss_timers(netns, family, host):
    netns.sh("sysctl -qw net.ipv4.tcp_max_tw_buckets=5000")

    def work():
        server = socket.socket(family)
        server.bind((host, 0))
        server.listen(64)
        netns.keep.append(server)

        def pair():
            c = socket.create_connection(server.getsockname()[:2])
            s, _ = server.accept()
            return c, s

        for _ in range(4):  # the client closes first and the server follows: TIME_WAIT on the client
            c, s = pair()
            c.close()
            wait_until(lambda s=s: s.recv(1) == b"")
            s.close()
        for _ in range(3):  # the client closes, the server never does: an orphan FIN_WAIT2, kept as a minisocket
            c, s = pair()
            c.close()
            netns.keep.append(s)
        for _ in range(2):  # the client shuts down but keeps its descriptor: a full FIN_WAIT2 socket
            c, s = pair()
            c.shutdown(socket.SHUT_WR)
            netns.keep.extend([c, s])

    netns.run(work)
    settle(netns)
    timers = ss_timewait_timers(netns)
    assert timers == {"TIME-WAIT": 4, "FIN-WAIT-2": 3}
    states = {s: 0 for s in ("FIN-WAIT-2",)}
    for _, state, _, _, _ in netns.ss("-t", "-a"):
        if state in states:
            states[state] += 1
    assert states["FIN-WAIT-2"] == 5  # ss shows both kinds alike
    exposition = scrape(netns, "tcp")
    name = "inet6" if family == socket.AF_INET6 else "inet"
    minisockets = {dict(k)["state"]: v for k, v in exposition.select("sockdiag_tcp_timewait_minisockets").items()
                   if dict(k)["family"] == name}
    assert minisockets == {"time_wait": 4, "fin_wait2": 3}
    assert sum(minisockets.values()) == sockstat_tw(netns)
    assert exposition.value("sockdiag_sockets", family=name, protocol="tcp", state="fin_wait2") == 5
    assert exposition.value("sockdiag_tcp_max_timewait_buckets") == 5000
    assert not exposition.select("sockdiag_tcp_timewait_minisockets", family="inet6" if name == "inet" else "inet")
