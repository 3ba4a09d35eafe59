"""UDP receivers one by one on the real kernel: queue, buffer and drops per local address against ss -uamn (skmem
r, rb, d) and nstat's RcvbufErrors; SO_REUSEPORT groups summed; autobound and connected sockets not by address."""

import re
import socket
import subprocess

from helpers import scrape, wait_until

SO_RCVBUFFORCE = 33


def ss_receivers(ns, *args):
    """local address -> [sockets, Recv-Q (rmem_alloc), rcvbuf, drops] of the unconnected UDP sockets, from
    ss -uan -m, summed per address."""
    out = subprocess.run(["ss", "-N", ns.name, "-H", "-u", "-a", "-n", "-m", *args], check=True,
                         capture_output=True, text=True).stdout
    rows, address = {}, None
    for line in out.splitlines():
        if "skmem:(" in line:
            if address:
                mem = dict(re.findall(r"([a-z]+)(\d+)", line.split("skmem:(")[1]))
                row = rows.setdefault(address, [0, 0, 0, 0])
                for i, value in enumerate((1, int(mem["r"]), int(mem["rb"]), int(mem["d"]))):
                    row[i] += value
        else:
            state, _, _, local = line.split()[:4]
            address = local if state == "UNCONN" else None
            if address and address.startswith("*:"):  # ss's name for [::] taking IPv4 too
                address = "[::]" + address[1:]
    return rows


def nstat_value(ns, name):
    return int(ns.sh(f"nstat -az {name}").splitlines()[1].split()[1])


def ours(exposition, **labels):
    result = {}
    for metric, i in (("sockdiag_udp_receiver_sockets", 0), ("sockdiag_udp_receiver_queue_bytes", 1),
                      ("sockdiag_udp_receiver_buffer_bytes", 2), ("sockdiag_udp_receiver_drops_total", 3)):
        for key, value in exposition.select(metric, **labels).items():
            result.setdefault(dict(key)["address"], [0, 0, 0, 0])[i] = int(value)
    return result


def test_a_flooded_receiver_with_the_smallest_buffer(netns):
    """Datagrams into a receiver that never reads, its buffer forced to the minimum: its drops are ss's d and the
    kernel's RcvbufErrors, its fill is rmem / rcvbuf; a second, healthy receiver drops nothing."""
    def work():
        flooded = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flooded.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1)  # the kernel's minimum (2304 bytes here)
        flooded.bind(("127.0.0.1", 5353))
        healthy = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        healthy.bind(("::", 53))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 40000))  # outside the port range below: a receiver of its own
        netns.keep.extend([flooded, healthy, sender])
        for _ in range(200):
            sender.sendto(b"d" * 512, ("127.0.0.1", 5353))
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"q", ("::1", 53))

    netns.sh("sysctl -qw net.ipv4.ip_local_port_range='50000 50999'")
    netns.run(work)
    assert wait_until(lambda: ss_receivers(netns).get("127.0.0.1:5353", [0, 0, 0, 0])[3] > 0)
    theirs = ss_receivers(netns)
    exposition = scrape(netns, "udp")
    assert ours(exposition) == theirs
    sockets, queue, buffer, drops = theirs["127.0.0.1:5353"]
    assert drops == nstat_value(netns, "UdpRcvbufErrors") and drops > 150
    assert 0 < queue <= buffer and buffer <= 4608
    assert theirs["[::]:53"] == [1, theirs["[::]:53"][1], theirs["[::]:53"][2], 0] and theirs["[::]:53"][1] > 0
    assert theirs["127.0.0.1:40000"][3] == 0
    # the per-state sums still hold every unconnected socket
    assert exposition.value("sockdiag_sockets", family="inet", protocol="udp", state="unconnected") == 2


def test_reuseport_groups_summed_clients_not_by_address(netns):
    """Two SO_REUSEPORT receivers on one address are one series; an autobound socket (sendto without bind: an
    ephemeral port) and sockets bound to ports of the ephemeral range are summed into address="other"; connected
    sockets are no receivers; beyond udp_receivers.max_series the rest fold too, the ones dropping kept."""
    def work():
        made = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("0.0.0.0", 5000))
            made.append(s)
        for port in (6000, 6001, 6002):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", port))
            made.append(s)
        dropping = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dropping.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1)
        dropping.bind(("127.0.0.1", 6003))
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(50):
            client.sendto(b"x" * 300, ("127.0.0.1", 6003))  # autobound to a port of the range
        in_range = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        in_range.bind(("127.0.0.1", 50500))
        connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        connected.connect(("127.0.0.1", 5000))
        netns.keep.extend(made + [dropping, client, in_range, connected])

    netns.sh("sysctl -qw net.ipv4.ip_local_port_range='50000 50999'")
    netns.run(work)
    theirs = ss_receivers(netns)
    other = [sum(col) for col in zip(*(row for address, row in theirs.items() if int(address.split(":")[-1]) >= 50000))]
    assert other[0] == 2  # the autobound client and the one bound inside the range
    exposition = scrape(netns, "udp")
    expected = {address: row for address, row in theirs.items() if int(address.split(":")[-1]) < 50000}
    assert ours(exposition) == dict(expected, other=other)
    assert ours(exposition)["0.0.0.0:5000"][0] == 2
    assert exposition.value("sockdiag_udp_receivers_folded", family="inet", protocol="udp") == 2
    assert exposition.value("sockdiag_sockets", family="inet", protocol="udp", state="established") == 1

    capped = ours(scrape(netns, "udp", config={"udp_receivers": {"max_series": 1}}))
    assert set(capped) == {"127.0.0.1:6003", "other"}  # the dropping one first
    assert capped["other"][0] == 2 + 3 + 2  # 5000 (two sockets), 6000-6002, and the two in the range
    assert not ours(scrape(netns, "udp", config={"udp_receivers": {"max_series": 0}})).keys() - {"other"}


def test_drops_keep_counting_while_the_receiver_lives(netns):
    """The drops series is a counter: it only grows while the socket lives (rate() is meaningful)."""
    def work():
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1)
        r.bind(("127.0.0.1", 7000))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        netns.keep.extend([r, s])
        return s

    sender = netns.run(work)
    seen = [0]
    for _ in range(3):
        for _ in range(20):
            sender.sendto(b"y" * 400, ("127.0.0.1", 7000))
        assert wait_until(lambda: ss_receivers(netns)["127.0.0.1:7000"][3] > seen[-1])
        drops = ss_receivers(netns)["127.0.0.1:7000"][3]
        assert scrape(netns, "udp").value("sockdiag_udp_receiver_drops_total", address="127.0.0.1:7000") == drops
        seen.append(drops)
    assert seen == sorted(set(seen))
