"""The exporter's decoders against the naive reference decoder (tests/reference.py), on random but valid dumps.

Hypothesis draws dumps the way the kernel sends them: segments of messages of one shape (the same attributes in
the same order, so that they form runs) with random keys and values, segments of different shapes one after
another (breaking runs, like TIME_WAIT sockets among full ones), messages of other requests and NOOPs in between,
split into receive buffers at message boundaries, each at the start of a larger buffer. Every layout, with and
without histograms, port groups and cgroup ids, and with the run path off and on at several lengths, must give
exactly the reference's counts, sums, histograms, groups, cgroups, TIME_WAIT minisockets, remote endpoints of
ephemeral ports, local endpoints of a state, and records.
"""

import os
import random
import socket
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diagmsg as dm
import reference

from sockdiag_exporter.diag import requests
from sockdiag_exporter.diag.decoder import RecordDecoder, counting_decoder
from sockdiag_exporter.diag.tally import NO_DETAIL, Detail, port_table, port_tables

EXAMPLES = int(os.environ.get("SOCKDIAG_REFERENCE_EXAMPLES", "2000"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEQ = 77
BOUNDS = (0, 1, 1024, 4096, 65536, 1 << 20, 1 << 30)
GROUPS = ((frozenset({80, 443}), frozenset()), (frozenset(), frozenset({5432})),
          (frozenset({8080, 1}), frozenset({8080, 65535})))
PORTS = (80, 443, 5432, 8080, 1, 65535, 22, 40000)
CGROUP_IDS = (0, 1, 4242, 2 ** 40 + 7)
ADDRESSES = {socket.AF_INET: ("127.0.0.1", "10.1.2.3", "0.0.0.0", "192.0.2.255"),
             socket.AF_INET6: ("::1", "2001:db8::5", "2001:db8::6", "::ffff:10.1.2.3", "::")}
EPHEMERAL = frozenset({40000, 65535, 1})  # local ports counted per remote endpoint
LOCAL_PORTS = frozenset({80, 40000})


def queue_value(rng: random.Random) -> int:
    """Mostly empty queues, else sizes around the bucket bounds and some huge ones (u32)."""
    roll = rng.random()
    if roll < 0.5:
        return 0
    if roll < 0.8:
        bound = rng.choice(BOUNDS)
        return max(0, min(0xFFFFFFFF, bound + rng.choice((-1, 0, 1))))
    return rng.randrange(1 << rng.choice((8, 16, 24, 32)))


def meminfo(rng: random.Random, length: int) -> bytes:
    """SK_MEMINFO of length u32s (9 on current kernels, fewer on old ones)."""
    return dm.meminfo([queue_value(rng) for _ in range(length)])


# --- one message of each family, with the attributes the kernel may send, in the shape's order ---

def inet_msg(rng, shape, key):
    family = shape["family"]
    local, remote = rng.choice(ADDRESSES[family][:3]), rng.choice(ADDRESSES[family])
    body = dm.inet_diag_msg(family, key[0], queue_value(rng), queue_value(rng), rng.choice(PORTS), rng.choice(PORTS),
                            local, remote, ifindex=rng.choice((0, 0, 1)), inode=rng.randrange(1 << 20),
                            cookie=rng.randrange(1 << 60), timer=rng.choice((0, 0, 1, 2, 3, 3, 4)))
    attrs = {
        "shutdown": lambda: dm.attr(dm.INET_DIAG_SHUTDOWN, bytes([rng.randrange(4)])),
        "tos": lambda: dm.attr(dm.INET_DIAG_TOS, bytes([rng.randrange(256)])),
        "mark": lambda: dm.attr(dm.INET_DIAG_MARK, struct.pack("=I", rng.randrange(1 << 32))),
        "protocol": lambda: dm.attr(dm.INET_DIAG_PROTOCOL, bytes([6])),
        "cgroup": lambda: dm.attr(dm.INET_DIAG_CGROUP_ID, struct.pack("=Q", rng.choice(CGROUP_IDS))),
        "meminfo": lambda: dm.attr(dm.INET_DIAG_SKMEMINFO, meminfo(rng, shape["meminfo_length"])),
        "info": lambda: dm.attr(dm.INET_DIAG_INFO, rng.randbytes(shape["info_length"])),
        "unknown": lambda: dm.attr(40, bytes(shape["unknown_length"])),
    }
    return body + b"".join(attrs[name]() for name in shape["attrs"])


def unix_msg(rng, shape, key):
    name = rng.choice((b"/run/a.sock\0", b"\0abstract", b"\0\xff\xfe bytes", b"/tmp/\xc3\xa9t\xc3\xa9\0"))
    attrs = {
        "name": lambda: dm.attr(dm.UNIX_DIAG_NAME, name),
        "peer": lambda: dm.attr(dm.UNIX_DIAG_PEER, struct.pack("=I", rng.randrange(1 << 20))),
        "rqlen": lambda: dm.attr(dm.UNIX_DIAG_RQLEN, dm.meminfo([queue_value(rng), queue_value(rng)])[
            :shape["rqlen_length"]]),
        "meminfo": lambda: dm.attr(dm.UNIX_DIAG_MEMINFO, meminfo(rng, shape["meminfo_length"])),
        "shutdown": lambda: dm.attr(dm.UNIX_DIAG_SHUTDOWN, bytes([rng.randrange(4)])),
        "uid": lambda: dm.attr(dm.UNIX_DIAG_UID, struct.pack("=I", 1000)),
    }
    return dm.unix_diag_msg(key[0], key[1], inode=rng.randrange(1 << 20)) + b"".join(
        attrs[n]() for n in shape["attrs"])


def netlink_msg(rng, shape, key):
    attrs = {
        "meminfo": lambda: dm.attr(dm.NETLINK_DIAG_MEMINFO, meminfo(rng, shape["meminfo_length"])),
        "groups": lambda: dm.attr(dm.NETLINK_DIAG_GROUPS, bytes(8)),
        "flags": lambda: dm.attr(dm.NETLINK_DIAG_FLAGS, struct.pack("=I", rng.randrange(64))),
    }
    return dm.netlink_diag_msg(key[0], key[1], key[2], portid=rng.randrange(1 << 31)) + b"".join(
        attrs[n]() for n in shape["attrs"])


def packet_msg(rng, shape, key):
    attrs = {
        "info": lambda: dm.attr(dm.PACKET_DIAG_INFO, bytes(16)),
        "uid": lambda: dm.attr(dm.PACKET_DIAG_UID, struct.pack("=I", 0)),
        "meminfo": lambda: dm.attr(dm.PACKET_DIAG_MEMINFO, meminfo(rng, shape["meminfo_length"])),
    }
    return dm.packet_diag_msg(key[0], key[1], inode=rng.randrange(1 << 20)) + b"".join(
        attrs[n]() for n in shape["attrs"])


def vsock_msg(rng, shape, key):
    return dm.vsock_diag_msg(key[0], key[1], shutdown=rng.randrange(4), src_port=rng.randrange(1 << 32)) + b"".join(
        dm.attr(50, bytes(shape["unknown_length"])) for _ in shape["attrs"])


def xdp_msg(rng, shape, key):
    return dm.xdp_diag_msg(key[0], inode=rng.randrange(1 << 20)) + b"".join(
        dm.attr(50, bytes(shape["unknown_length"])) for _ in shape["attrs"])


def smc_msg(rng, shape, key):
    return dm.smc_diag_msg(shape["family"], key[0], rng.choice(PORTS), rng.choice(PORTS)) + b"".join(
        dm.attr(50, bytes(shape["unknown_length"])) for _ in shape["attrs"])


def tipc_msg(rng, shape, key):
    return dm.tipc_sock(key[0], key[1], inode=rng.randrange(1 << 20)) + b"".join(
        dm.attr(50, bytes(shape["unknown_length"])) for _ in shape["attrs"])


# family -> (message builder, attribute names it may carry, keys to draw from)
FAMILIES = {
    "inet": (inet_msg, ("shutdown", "tos", "mark", "protocol", "cgroup", "meminfo", "info", "unknown"),
             [(s,) for s in range(1, 13)]),
    "unix": (unix_msg, ("name", "peer", "rqlen", "meminfo", "shutdown", "uid"),
             [(t, s) for t in (1, 2, 5) for s in (1, 7, 10)]),
    "netlink": (netlink_msg, ("meminfo", "groups", "flags"), [(3, p, s) for p in (0, 4, 9, 16, 99) for s in (0, 1, 7)]),
    "packet": (packet_msg, ("info", "uid", "meminfo"), [(t, n) for t in (2, 3) for n in (0x0003, 0x0800, 0x86DD, 0x88B5)]),
    "vsock": (vsock_msg, ("unknown",), [(t, s) for t in (1, 2, 5) for s in (1, 2, 7, 10)]),
    "xdp": (xdp_msg, ("unknown",), [(3,)]),
    "smc": (smc_msg, ("unknown",), [(s,) for s in (1, 2, 7, 10, 20, 27)]),
    "tipc": (tipc_msg, ("unknown",), [(t, s) for t in (1, 2, 4, 5) for s in (1, 2, 7, 8, 10)]),
}


@st.composite
def shapes(draw, family: str, require=()):
    """How the messages of one segment look: which attributes, in which order, of which sizes."""
    _, names, _ = FAMILIES[family]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    for name in require:
        if name not in chosen and draw(st.integers(0, 9)):  # the required attribute, missing one time in ten
            chosen.insert(draw(st.integers(0, len(chosen))), name)
    return {
        "attrs": chosen,
        "family": draw(st.sampled_from((socket.AF_INET, socket.AF_INET6))),
        "meminfo_length": draw(st.sampled_from((9, 9, 9, 8, 4, 1))),
        "rqlen_length": draw(st.sampled_from((8, 8, 8, 4, 0))),
        "info_length": draw(st.sampled_from((104, 232, 280))),
        "unknown_length": draw(st.integers(0, 9)),
    }


@st.composite
def dumps(draw, family: str, require=()):
    """(buffers, backing padding per buffer, expected completion): a whole dump as receive buffers."""
    build, _, keys = FAMILIES[family]
    rng = random.Random(draw(st.integers(0, 2 ** 32 - 1)))
    messages = []
    for _ in range(draw(st.integers(0, 5))):
        shape = draw(shapes(family, require))
        count = draw(st.one_of(st.integers(1, 5), st.integers(20, 120)))
        key_choices = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))
        intr_at = draw(st.one_of(st.none(), st.integers(0, count - 1)))
        for i in range(count):
            flags = dm.NLM_F_MULTI | (dm.NLM_F_DUMP_INTR if i == intr_at else 0)
            messages.append(dm.nlmsg(build(rng, shape, rng.choice(key_choices)), SEQ, flags=flags))
        extra = draw(st.sampled_from(("", "", "", "stale", "noop", "ack")))
        if extra == "stale":  # the rest of an earlier, aborted dump on this socket
            messages.append(dm.nlmsg(build(rng, shape, keys[0]), SEQ - 1))
            messages.append(dm.done(SEQ - 1, -5))
        elif extra == "noop":
            messages.append(dm.nlmsg(b"", SEQ, dm.NLMSG_NOOP, 0))
        elif extra == "ack":
            messages.append(dm.error(SEQ, 0))
    messages.append(dm.done(SEQ))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(messages) - 1)), max_size=6))))
    buffers = [b"".join(messages[a:b]) for a, b in zip([0] + cuts, cuts + [len(messages)]) if a < b]
    padding = [4 * draw(st.integers(0, 64)) for _ in buffers]
    return buffers, padding


def feed_all(decoder, buffers, padding) -> None:
    """Each buffer at the start of a larger one, as DiagSocket receives it; complete exactly at the last."""
    for i, (data, pad) in enumerate(zip(buffers, padding)):
        backing = bytearray(len(data) + pad)
        backing[: len(data)] = data
        mv = memoryview(backing)
        complete = decoder.feed(mv, mv.cast("I"), len(data))
        assert complete == (i == len(buffers) - 1)


def ours(tally, groups: int):
    """The production tally in the reference's terms: keys as tuples of their named parts, equal keys summed."""
    rows, hist, grouped, cgroups, locals_ = {}, {}, {}, {}, {}

    def add(table, key, row):
        total = table.setdefault(key, [0] * len(row))
        for i, v in enumerate(row):
            total[i] += v

    for entry in tally.entries():
        add(rows, tuple(entry.key), entry.row)
        if entry.hist:
            total = hist.setdefault(tuple(entry.key), [[0] * len(entry.hist[0]) for _ in range(2)])
            for t, h in zip(total, entry.hist):
                for i, n in enumerate(h):
                    t[i] += n
    for bit in range(groups):
        for key, row in tally.in_group(bit):
            add(grouped, (bit, tuple(key)), row)
    for cgroup, key, row in tally.by_cgroup():
        add(cgroups, (cgroup, tuple(key)), row)
    for local, row in tally.by_local():
        add(locals_, tuple(local), row)
    minisockets = {tuple(key): count for key, count in tally.minisockets()}
    remotes = {tuple(remote): count for remote, count in tally.by_remote()}
    assert sum(remotes.values()) == sum(tally.remotes.values()) and tally.busiest_remote() == max(remotes.values(),
                                                                                                   default=0)
    assert tally.remote_destinations() == len({(address, port) for _, address, port in remotes})
    return rows, hist, grouped, cgroups, minisockets, remotes, locals_


def check(family, layout, buffers, padding, min_run, detail=NO_DETAIL, memory=False, groups=(), cgroups=False,
          ephemeral=None, local_ports=None, timewait=True):
    request = reference.Request(family, memory, detail.bounds, groups, cgroups, timewait, ephemeral,
                                detail.local_state, local_ports)
    expected = reference.decode(request, buffers, SEQ)
    decoder = counting_decoder(layout, SEQ, "test", detail, min_run)
    feed_all(decoder, buffers, padding)
    rows, hist, grouped, by_cgroup, minisockets, remotes, locals_ = ours(decoder.tally, len(groups))
    assert rows == expected.rows
    assert hist == expected.hist
    assert grouped == {k: v for k, v in expected.groups.items()}
    assert by_cgroup == expected.cgroups
    assert minisockets == expected.minisockets
    assert remotes == expected.remotes
    assert locals_ == expected.locals
    assert decoder.interrupted == expected.interrupted


MIN_RUNS = st.sampled_from((0, 2, 3, 8, 32))
INET_DETAIL = Detail(BOUNDS, port_tables([(sorted(local), sorted(remote)) for local, remote in GROUPS]))


@SETTINGS
@given(dumps("inet"), MIN_RUNS)
def test_inet(dump, min_run):
    check("inet", requests.INET_LAYOUT, *dump, min_run)


@SETTINGS
@given(dumps("inet"), MIN_RUNS)
def test_inet_histograms_and_port_groups(dump, min_run):
    check("inet", requests.INET_LAYOUT, *dump, min_run, INET_DETAIL, groups=GROUPS)


@SETTINGS
@given(dumps("inet", require=("cgroup",)), MIN_RUNS)
def test_inet_cgroups(dump, min_run):
    detail = INET_DETAIL._replace(cgroup_attr=dm.INET_DIAG_CGROUP_ID)
    check("inet", requests.INET_LAYOUT, *dump, min_run, detail, groups=GROUPS, cgroups=True)


@SETTINGS
@given(dumps("inet", require=("meminfo",)), MIN_RUNS, st.booleans())
def test_inet_memory(dump, min_run, with_detail):
    detail, groups = (INET_DETAIL, GROUPS) if with_detail else (NO_DETAIL, ())
    check("inet", requests.INET_MEMORY_LAYOUT, *dump, min_run, detail, memory=True, groups=groups)


ENDPOINTS = st.tuples(st.sampled_from((None, EPHEMERAL)), st.sampled_from((-1, 3, 5, 7)),
                      st.sampled_from((None, LOCAL_PORTS)))


def endpoint_detail(detail, endpoints):
    """detail with the endpoint tallies drawn: (ephemeral ports, local state, local ports); their sets for check."""
    ephemeral, state, local_ports = endpoints
    detail = detail._replace(ephemeral=None if ephemeral is None else port_table(ephemeral), local_state=state,
                             local_ports=None if local_ports is None else port_table(local_ports))
    return detail, dict(ephemeral=ephemeral, local_ports=local_ports)


@SETTINGS
@given(dumps("inet"), MIN_RUNS, ENDPOINTS, st.booleans())
def test_inet_endpoints(dump, min_run, endpoints, with_detail):
    """The struct path (and its runs) with remote and local endpoint tallies, alone or with histograms and port
    groups (then the remote port is read apart from the remote endpoint key)."""
    detail, groups = (INET_DETAIL, GROUPS) if with_detail else (NO_DETAIL, ())
    detail, sets = endpoint_detail(detail, endpoints)
    check("inet", requests.INET_LAYOUT, *dump, min_run, detail, groups=groups, **sets)


@SETTINGS
@given(dumps("inet", require=("meminfo",)), MIN_RUNS, ENDPOINTS, st.booleans())
def test_inet_memory_endpoints(dump, min_run, endpoints, with_cgroups):
    """The attribute path (and its runs; none with cgroup ids) with the endpoint tallies: UDP receivers' way."""
    detail = INET_DETAIL._replace(cgroup_attr=dm.INET_DIAG_CGROUP_ID if with_cgroups else 0)
    detail, sets = endpoint_detail(detail, endpoints)
    check("inet", requests.INET_MEMORY_LAYOUT, *dump, min_run, detail, memory=True, groups=GROUPS,
          cgroups=with_cgroups, **sets)


@SETTINGS
@given(dumps("inet"), MIN_RUNS, ENDPOINTS)
def test_sctp_has_no_minisockets(dump, min_run, endpoints):
    """sctp_diag's idiag_timer names SCTP timers: its layouts read none (and take the attribute path)."""
    detail, sets = endpoint_detail(NO_DETAIL, endpoints)
    check("inet", requests.SCTP_LAYOUT, *dump, min_run, detail, timewait=False, **sets)


@SETTINGS
@given(dumps("unix", require=("rqlen",)), MIN_RUNS, st.booleans())
def test_unix(dump, min_run, histograms):
    check("unix", requests.UNIX_LAYOUT, *dump, min_run, Detail(BOUNDS if histograms else ()))


@SETTINGS
@given(dumps("unix", require=("rqlen", "meminfo")), MIN_RUNS)
def test_unix_memory(dump, min_run):
    check("unix", requests.UNIX_MEMORY_LAYOUT, *dump, min_run, Detail(BOUNDS), memory=True)


@SETTINGS
@given(dumps("netlink", require=("meminfo",)), MIN_RUNS, st.booleans())
def test_netlink(dump, min_run, memory):
    layout = requests.NETLINK_MEMORY_LAYOUT if memory else requests.NETLINK_LAYOUT
    check("netlink", layout, *dump, min_run, Detail(BOUNDS), memory=memory)


@SETTINGS
@given(dumps("packet", require=("meminfo",)), MIN_RUNS, st.booleans())
def test_packet(dump, min_run, memory):
    layout = requests.PACKET_MEMORY_LAYOUT if memory else requests.PACKET_LAYOUT
    check("packet", layout, *dump, min_run, Detail(BOUNDS), memory=memory)


@SETTINGS
@given(dumps("vsock"), MIN_RUNS)
def test_vsock(dump, min_run):
    check("vsock", requests.VSOCK_LAYOUT, *dump, min_run)


@SETTINGS
@given(dumps("xdp"), MIN_RUNS)
def test_xdp(dump, min_run):
    check("xdp", requests.XDP_LAYOUT, *dump, min_run)


@SETTINGS
@given(dumps("smc"), MIN_RUNS)
def test_smc(dump, min_run):
    check("smc", requests.SMC_LAYOUT, *dump, min_run)


@SETTINGS
@given(dumps("tipc"), MIN_RUNS)
def test_tipc(dump, min_run):
    check("tipc", requests.TIPC_LAYOUT, *dump, min_run)


@SETTINGS
@given(dumps("inet"))
def test_inet_listener_records(dump):
    buffers, padding = dump
    decoder = RecordDecoder(requests.INET_LAYOUT, SEQ, "test", requests.inet_listener)
    feed_all(decoder, buffers, padding)
    expected = reference.decode(reference.Request("inet"), buffers, SEQ)
    assert [tuple(r) for r in decoder.records] == [reference.inet_listener(m) for m in expected.records]


@SETTINGS
@given(dumps("unix"))
def test_unix_listener_records(dump):
    buffers, padding = dump
    decoder = RecordDecoder(requests.UNIX_LAYOUT, SEQ, "test", requests.unix_listener)
    feed_all(decoder, buffers, padding)
    expected = reference.decode(reference.Request("unix"), buffers, SEQ)
    assert [tuple(r) for r in decoder.records] == [reference.unix_listener(m) for m in expected.records]


# --- destroy events: the flows decoder against the reference's rules -------------------------------------------

EVENT_PORTS = (80, 443, 8080, 40000, 0)
LISTENING = {("inet", 80), ("inet6", 443), ("inet", 8080), ("inet6", 8080)}
RTT_BOUNDS = (100, 1000, 10000, 100000, 1000000)  # microseconds
FLOW_GROUPS = ((frozenset({80}), frozenset()), (frozenset(), frozenset({443, 40000})))
INFO_LENGTHS = (280, 280, 280, 248, 232, 224, 160, 150, 144, 104, 0)  # kernels from 2.6 to 6.18, and a cut field


def tcp_fields(rng: random.Random) -> dict:
    """tcp_info values around the classification's edges: zero or not, "no RTT sample", unanswered SYNs."""
    def some(top):
        return rng.choice((0, 0, 1, 2, rng.randrange(top)))

    return {"pmtu": rng.choice((0, 1500, 65535, 65535)), "retransmits": rng.choice((0, 0, 0, 1, 6)),
            "rtt": rng.choice((0, 50, 100, 101, 20000, 5_000_000)), "total_retrans": some(100),
            "bytes_acked": some(1 << 40), "bytes_received": some(1 << 40), "segs_out": some(1000),
            "segs_in": some(1000), "min_rtt": rng.choice((0xFFFFFFFF, 0xFFFFFFFF, 0, 30)),
            "bytes_retrans": some(1 << 20), "snd_wnd": rng.choice((0, 0, 65535))}


@st.composite
def event_datagrams(draw):
    """Datagrams as a subscriber receives them: mostly one TCP event of the kernel's shape; others of older and newer
    kernels (shorter tcp_info, a PAD attribute, the attributes in another order, unknown ones after), UDP events,
    other protocols and families, and now and then two messages in one datagram or a NOOP."""
    rng = random.Random(draw(st.integers(0, 2 ** 32 - 1)))
    datagrams = []
    for _ in range(draw(st.integers(0, 60))):
        family = rng.choice((socket.AF_INET, socket.AF_INET6))
        kind = rng.choice(("tcp",) * 8 + ("udp", "udplite", "unix family", "noop", "two"))
        sport, dport = rng.choice(EVENT_PORTS), rng.choice(EVENT_PORTS)
        if kind == "udp":
            datagrams.append(dm.destroy_event(family, 17, sport, dport))
            continue
        if kind == "udplite":
            datagrams.append(dm.destroy_event(family, 136, sport, dport))
            continue
        if kind == "noop":
            datagrams.append(dm.nlmsg(b"", 0, dm.NLMSG_NOOP, 0))
            continue
        info = dm.tcp_info(rng.choice(INFO_LENGTHS), **tcp_fields(rng))
        protocol = dm.attr(dm.INET_DIAG_PROTOCOL, bytes([6]))
        shape = rng.choice(("kernel",) * 6 + ("pad", "info first", "unknown after", "no info"))
        attrs = {"kernel": [protocol, dm.attr(dm.INET_DIAG_INFO, info)],
                 "pad": [protocol, dm.attr(dm.INET_DIAG_PAD, b""), dm.attr(dm.INET_DIAG_INFO, info)],
                 "info first": [dm.attr(dm.INET_DIAG_INFO, info), protocol],
                 "unknown after": [protocol, dm.attr(dm.INET_DIAG_INFO, info), dm.attr(60, bytes(rng.randrange(9)))],
                 "no info": [protocol]}[shape]
        event = dm.destroy_event(socket.AF_UNIX if kind == "unix family" else family, 6, sport, dport,
                                 rqueue=rng.choice((0, 0, 1, 2, 100)), attrs=attrs)
        if kind == "two":
            event += dm.destroy_event(family, 17, sport, dport)
        datagrams.append(event)
    return datagrams


def flows_ours(tally, groups: int):
    """The FlowDecoder's tally in the reference's terms."""
    from sockdiag_exporter.diag.flows import OUTCOMES

    names = ("inet", "inet6"), ("outbound", "inbound"), ("completed", "reset", "timeout", "refused", "unanswered")
    assert len(names[2]) == OUTCOMES

    def key(k):
        return names[0][k.family], names[1][k.direction], names[2][k.outcome]

    rows = {key(k): list(row) for k, row in tally.connections()}
    listeners = {key(k) + (port,): list(row) for k, port, row in tally.by_listener()}
    grouped = {}
    for bit in range(groups):
        for k, row in tally.in_group(bit):  # one row per group mask: connections in several groups come apart
            total = grouped.setdefault((bit,) + key(k), [0] * len(row))
            for i, value in enumerate(row):
                total[i] += value
    rtt = {name: list(tally.rtt_histogram(d)[0]) for d, name in enumerate(names[1])}
    rtt_sum = {name: tally.rtt_histogram(d)[1] for d, name in enumerate(names[1])}
    udp = dict(zip(names[0], tally.udp))
    return reference.Flows(rows, listeners, grouped, rtt, rtt_sum, udp, tally.events, tally.ignored,
                           tally.malformed)


@SETTINGS
@given(event_datagrams(), st.booleans())
def test_destroy_events(datagrams, batched):
    """Every datagram through the decoder as the subscriber feeds it (recvmmsg slots) or one by one."""
    from sockdiag_exporter.diag.flows import INET, INET6, FlowDecoder

    decoder = FlowDecoder(RTT_BOUNDS, port_tables([(sorted(a), sorted(b)) for a, b in FLOW_GROUPS]))
    decoder.listen([(INET if family == "inet" else INET6, port) for family, port in LISTENING])
    slot = 1024
    if batched:
        backing = bytearray(slot * max(1, len(datagrams)))
        for i, data in enumerate(datagrams):
            backing[i * slot : i * slot + len(data)] = data
        decoder.feed_slots(memoryview(backing), len(datagrams), slot, [len(d) for d in datagrams])
    else:
        for data in datagrams:
            decoder.feed(memoryview(bytearray(data) + bytes(64)), 0, len(data))
    expected = reference.decode_events(datagrams, LISTENING, RTT_BOUNDS, FLOW_GROUPS)
    assert flows_ours(decoder.tally, len(FLOW_GROUPS)) == expected


def summed(x, y):
    """Two reference results' tallies added up, table by table (what Tally.merge must give)."""
    def add(a, b):
        if isinstance(a, list):
            return [add(p, q) for p, q in zip(a, b)]
        return a + b

    tables = []
    for a, b in zip(x[:7], y[:7]):  # rows, hist, groups, cgroups, minisockets, remotes, locals
        total = dict(a)
        for key, value in b.items():
            total[key] = add(total[key], value) if key in total else value
        tables.append(total)
    return tables


@SETTINGS
@given(dumps("inet", require=("cgroup",)), dumps("inet"), MIN_RUNS, ENDPOINTS)
def test_merged_tallies_of_two_dumps_are_their_sum(first, second, min_run, endpoints):
    """A dump made in parts (tcp's full sockets, then its minisockets) merges into one tally: every table summed."""
    detail, sets = endpoint_detail(INET_DETAIL._replace(cgroup_attr=dm.INET_DIAG_CGROUP_ID), endpoints)
    request = reference.Request("inet", False, detail.bounds, GROUPS, True, True, sets["ephemeral"],
                                detail.local_state, sets["local_ports"])
    tallies = []
    for buffers, padding in (first, second):
        decoder = counting_decoder(requests.INET_LAYOUT, SEQ, "test", detail, min_run)
        feed_all(decoder, buffers, padding)
        tallies.append(decoder.tally)
    merged = ours(tallies[0].merge(tallies[1]), len(GROUPS))
    expected = summed(reference.decode(request, first[0], SEQ), reference.decode(request, second[0], SEQ))
    assert list(merged) == expected
