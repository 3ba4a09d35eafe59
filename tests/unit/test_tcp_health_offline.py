"""tcp_health without a kernel: the port filter run by a transcription of the kernel's bytecode audit and
interpreter (net/ipv4/inet_diag.c) on random port sets, the decoder on hand-built replies (older kernels' shorter
tcp_info, time-wait stand-ins without one), and the configuration."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockdiag_exporter import metrics as m
from sockdiag_exporter.collectors.base import Samples
from sockdiag_exporter.collectors.options import Options
from sockdiag_exporter.collectors.tcp_health import HealthState, _traffic
from sockdiag_exporter.config import ConfigError, from_dict
from sockdiag_exporter.diag import constants as c
from sockdiag_exporter.diag import health, tcpinfo
from sockdiag_exporter.diag.flows import listening_table
from sockdiag_exporter.diag.tally import port_tables

_OP = struct.Struct("=BBH")
_PORT_OPS = {health.BC_S_GE: ("s", ">="), health.BC_S_LE: ("s", "<="), health.BC_S_EQ: ("s", "=="),
             health.BC_D_GE: ("d", ">="), health.BC_D_LE: ("d", "<="), health.BC_D_EQ: ("d", "==")}


def _valid_cc(code: bytes, length: int, cc: int) -> bool:
    pos = 0
    while length >= 0:
        if cc > length:
            return False
        if cc == length:
            return True
        _, yes, _ = _OP.unpack_from(code, pos)
        if yes < 4 or yes & 3:
            return False
        length -= yes
        pos += yes
    return False


def kernel_audit(code: bytes) -> bool:
    """inet_diag_bc_audit, for the ops port_filter uses."""
    length, pos = len(code), 0
    while length > 0:
        op, yes, no = _OP.unpack_from(code, pos)
        if op in _PORT_OPS:
            if length < 8:
                return False
            min_len = 8
        elif op == health.BC_JMP:
            min_len = 4
        else:
            return False
        if no < min_len or no > length + 4 or no & 3:
            return False
        if no < length and not _valid_cc(code, len(code), length - no):
            return False
        if yes < min_len or yes > length + 4 or yes & 3:
            return False
        pos += yes
        length -= yes
    return True


def kernel_run(code: bytes, sport: int, dport: int) -> bool:
    """inet_diag_bc_run."""
    length, pos = len(code), 0
    while length > 0:
        op, yes, no = _OP.unpack_from(code, pos)
        if op == health.BC_JMP:
            ok = False
        else:
            side, cmp = _PORT_OPS[op]
            port = _OP.unpack_from(code, pos + 4)[2]
            value = sport if side == "s" else dport
            ok = value >= port if cmp == ">=" else value <= port if cmp == "<=" else value == port
        step = yes if ok else no
        length -= step
        pos += step
    return length == 0


ranges = st.lists(st.tuples(st.sampled_from(("local", "remote")), st.integers(1, 200), st.integers(0, 5)).map(
    lambda t: (t[0], t[1], t[1] + t[2])), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(ranges, st.integers(1, 210), st.integers(1, 210))
def test_the_filter_passes_the_kernels_audit_and_accepts_exactly_the_matching_ports(ports, sport, dport):
    code = health.port_filter(ports)
    assert kernel_audit(code)
    expected = any((sport if side == "local" else dport) in range(low, high + 1) for side, low, high in ports)
    assert kernel_run(code, sport, dport) == expected


def test_port_ranges_join_consecutive_ports():
    assert health.port_ranges([5, 1, 2, 3, 9, 10]) == [(1, 3), (5, 5), (9, 10)]


def _reply(state: int, lport: int, rport: int, info: bytes = None, seq: int = 1) -> bytes:
    msg = struct.pack("=BBBB", c.AF_INET, state, 0, 0) + struct.pack("!HH", lport, rport) + bytes(64)
    attrs = b""
    if info is not None:
        attrs = struct.pack("=HH", 4 + len(info), c.INET_DIAG_INFO) + info + bytes(-len(info) % 4)
    body = msg + attrs
    return struct.pack("=IHHII", 16 + len(body), c.SOCK_DIAG_BY_FAMILY, 2, seq, 0) + body


def _info(length: int, **values) -> bytes:
    buf = bytearray(max(length, tcpinfo.SIZE))
    for name, value in values.items():
        offset, code = tcpinfo.OFFSETS[name]
        struct.pack_into("=" + code, buf, offset, value)
    return bytes(buf[:length])


def _decode(*replies):
    done = struct.pack("=IHHIIi", 20, c.NLMSG_DONE, 2, 1, 0, 0)
    data = bytearray(b"".join(replies) + done)
    decoder = health.HealthDecoder(1, "test", (1000, 10000), listening_table([(0, 80)]))
    mv = memoryview(data)
    assert decoder.feed(mv, mv.cast("I") if len(data) % 4 == 0 else None, len(data))
    return decoder.tally


def test_shorter_tcp_info_reads_absent_fields_as_zero_and_counts_no_zero_window():
    full = _info(tcpinfo.SIZE, rtt=5000, min_rtt=4000, total_retrans=3, snd_wnd=0, bytes_received=7)
    old = _info(160, rtt=20000, min_rtt=tcpinfo.NO_RTT_SAMPLE, total_retrans=1)  # a 4.6 kernel: no snd_wnd
    tally = _decode(_reply(c.TCP_ESTABLISHED, 80, 5000, full), _reply(c.TCP_ESTABLISHED, 80, 5001, old),
                    _reply(c.TCP_CLOSE_WAIT, 80, 5002, _info(tcpinfo.SIZE, bytes_received=11, total_retrans=9)),
                    _reply(c.TCP_FIN_WAIT2, 80, 5003), _reply(c.TCP_ESTABLISHED, 9999, 80, full))
    ((family, port, row),) = tally.by_listener()
    assert (family, port) == (0, 80)
    col = health.COL
    assert row[col["connections"]] == 2
    assert row[col["rtt_us"]] == 25000
    assert row[col["min_rtt_samples"]] == 1 and row[col["min_rtt_us"]] == 4000
    assert row[col["total_retrans"]] == 4  # the closing connection adds only its bytes
    assert row[col["zero_window"]] == 1
    assert row[col["bytes_received"]] == 18
    assert tally.histograms(row) == ([0, 1, 1], [0, 1, 0])
    assert tally.sockets == 5 and tally.other == 2  # the time-wait stand-in and the outbound connection


def test_config_checks_the_groups_and_runs_the_collector_only_when_enabled():
    assert "tcp_health" not in [col.name for col in from_dict({}).enabled_collectors()]
    config = from_dict({"tcp_health": {"enabled": True, "port_groups": ["web"]},
                        "port_groups": {"web": {"local": [80, 81, 82, 443]}}})
    assert "tcp_health" in [col.name for col in config.enabled_collectors()]
    health_options = Options.from_config(config).health
    assert health_options.ports == (("local", 80, 82), ("local", 443, 443)) and health_options.groups == (0,)
    config = from_dict({"tcp_health": {"enabled": True},
                        "port_groups": {"web": {"local": [80]}, "db": {"remote": [5432, 5433]}}})
    assert Options.from_config(config).health.ports == (("local", 80, 80), ("remote", 5432, 5433))
    assert health.scope([8000, 80, 8001], [("local", 80, 80), ("remote", 5432, 5433)]) == [
        ("local", 80, 80), ("local", 8000, 8001), ("remote", 5432, 5433)]
    with pytest.raises(ConfigError, match="tcp_health.port_groups: 'db' is not a group of port_groups"):
        from_dict({"tcp_health": {"enabled": True, "port_groups": ["db"]}})


def test_traffic_counters_hold_their_last_value_and_count_each_hold():
    state = HealthState(20)
    served = []
    for received in (100, 250, 180, 260):  # a connection closed and its event not read yet: 250 -> 180
        out = Samples()
        _traffic(out, state, {("inet", "0.0.0.0:80"): [10, received]}, m.LISTENER_TRAFFIC)
        served.append(out.by_metric[m.LISTENER_TRAFFIC[1]][0][1])
    assert served == [100, 250, 250, 260]
    assert state.clamped == 1


_STATES = (c.TCP_ESTABLISHED, c.TCP_FIN_WAIT1, c.TCP_CLOSE_WAIT, c.TCP_LAST_ACK)
_FIELDS = ("ca_state", "unacked", "lost", "retrans", "rtt", "total_retrans", "bytes_acked", "bytes_received",
           "segs_out", "notsent_bytes", "min_rtt", "busy_time", "rwnd_limited", "sndbuf_limited", "snd_wnd")
_BOUNDS = (1000, 10000)


def _field(info: bytes, name: str) -> int:
    offset, code = tcpinfo.OFFSETS[name]
    return struct.unpack_from("=" + code, tcpinfo.padded(info), offset)[0]


def _reference_row(conns) -> list:
    """A row written from the README's definitions, one connection at a time."""
    row = [0] * (len(health.SUMS) + 2 * (len(_BOUNDS) + 1))
    col, base = health.COL, len(health.SUMS)
    for state, info in conns:
        f = {name: _field(info, name) for name in _FIELDS}
        row[col["bytes_acked"]] += f["bytes_acked"]
        row[col["bytes_received"]] += f["bytes_received"]
        if state != c.TCP_ESTABLISHED:
            continue
        row[col["connections"]] += 1
        row[col["rtt_us"]] += f["rtt"]
        row[base + sum(f["rtt"] > b for b in _BOUNDS)] += 1
        if f["min_rtt"] != tcpinfo.NO_RTT_SAMPLE:
            row[col["min_rtt_samples"]] += 1
            row[col["min_rtt_us"]] += f["min_rtt"]
            row[base + len(_BOUNDS) + 1 + sum(f["min_rtt"] > b for b in _BOUNDS)] += 1
        for name, field in (("total_retrans", "total_retrans"), ("retrans", "retrans"), ("lost", "lost"),
                            ("unacked", "unacked"), ("notsent_bytes", "notsent_bytes"), ("busy_time_us", "busy_time"),
                            ("rwnd_limited_us", "rwnd_limited"), ("sndbuf_limited_us", "sndbuf_limited"),
                            ("segs_out", "segs_out")):
            row[col[name]] += f[field]
        row[col["in_recovery"]] += f["ca_state"] >= 3
        row[col["zero_window"]] += len(info) >= 232 and f["snd_wnd"] == 0
    return row


connection = st.tuples(
    st.sampled_from(_STATES), st.sampled_from((80, 81, 5000)), st.sampled_from((443, 6000)),
    st.sampled_from((104, 160, 224, 232, 280)),
    st.fixed_dictionaries({name: st.integers(0, 5) if name in ("ca_state", "snd_wnd") else
                           st.integers(0, 30000) for name in _FIELDS}))


@settings(max_examples=200, deadline=None)
@given(st.lists(connection, max_size=40))
def test_the_decoder_sums_what_a_connection_by_connection_reference_sums(conns):
    replies = [_reply(state, lport, rport, _info(length, **values)) for state, lport, rport, length, values in conns]
    done = struct.pack("=IHHIIi", 20, c.NLMSG_DONE, 2, 1, 0, 0)
    data = bytearray(b"".join(replies) + done)
    mv = memoryview(data)
    # port 80 listens (inbound); group 0: local 81, group 1: remote 443
    decoder = health.HealthDecoder(1, "test", _BOUNDS, listening_table([(0, 80)]), port_tables([((81,), ()),
                                                                                             ((), (443,))]))
    assert decoder.feed(mv, mv.cast("I"), len(data))
    tally = decoder.tally
    infos = [(state, _info(length, **values), lport, rport) for state, lport, rport, length, values in conns]
    listener = [(s, i) for s, i, lport, _ in infos if lport == 80]
    assert {port: row for _, port, row in tally.by_listener()} == ({80: _reference_row(listener)} if listener else {})
    for bit, member in ((0, lambda lport, rport: lport == 81), (1, lambda lport, rport: rport == 443)):
        expected = {}
        for s, i, lport, rport in infos:
            if member(lport, rport):
                expected.setdefault(int(lport == 80), []).append((s, i))
        got = {}  # a connection in both groups is in a row of its own (mask 3): rows add up per group
        for key, row in tally.in_group(bit):
            got[key.direction] = [a + b for a, b in zip(got.get(key.direction, [0] * len(row)), row)]
        assert got == {direction: _reference_row(cs) for direction, cs in expected.items()}
        if bit == 1:
            group_one = got
    assert tally.sockets == len(conns)

    # tcp_health.port_groups: [group 1]: only its connections count, and only in its rows
    only = health.HealthDecoder(1, "test", _BOUNDS, listening_table([(0, 80)]), port_tables([((81,), ()),
                                                                                          ((), (443,))]), (1,))
    assert only.feed(mv, mv.cast("I"), len(data))
    assert list(only.tally.in_group(0)) == []
    got = {}
    for key, row in only.tally.in_group(1):
        got[key.direction] = [a + b for a, b in zip(got.get(key.direction, [0] * len(row)), row)]
    assert got == group_one
    in_one = [(s, i) for s, i, lport, rport in infos if lport == 80 and rport == 443]
    assert {port: row for _, port, row in only.tally.by_listener()} == ({80: _reference_row(in_one)} if in_one else {})
