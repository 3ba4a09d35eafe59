"""Live TCP health: one dump of connected TCP sockets with their tcp_info, streamed into per-listener and
per-port-group rows (never a row per connection).

The request (:func:`request`) asks for INET_DIAG_INFO, which makes every reply ~4x longer and takes each socket's
lock in the kernel, so it is a dump of its own, separate from the main one: restricted to the connected states
(ESTABLISHED, and the closing states that still hold a full socket and its byte counters) and, when the
configuration restricts it to some ports, to those ports by an INET_DIAG_REQ_BYTECODE filter the kernel runs
before it fills anything (:func:`port_filter`).

What a row holds (:data:`SUMS` then the RTT and minimum RTT buckets): ESTABLISHED connections give every column;
the closing states only their byte counters (tcpi_bytes_acked, tcpi_bytes_received), so that closed + live bytes
never drop when a connection starts to close.
"""

import struct
from bisect import bisect_left
from typing import Dict, Iterable, Iterator, List, NamedTuple, Sequence, Tuple

from . import constants as c
from . import tcpinfo
from .attrs import walk_attrs
from .decoder import Decoder
from .requests import INET_LAYOUT

# Every state in which a TCP socket is a full socket with a peer: ESTABLISHED and the closing ones. TIME_WAIT
# sockets are mini sockets without tcp_info (their full socket was destroyed: the flows events counted it).
CONNECTED_STATES = sum(1 << s for s in (c.TCP_ESTABLISHED, c.TCP_FIN_WAIT1, c.TCP_FIN_WAIT2, c.TCP_CLOSE_WAIT,
                                        c.TCP_LAST_ACK, c.TCP_CLOSING))
INET_DIAG_REQ_BYTECODE = 1
# Most port ranges in one filter: its jumps and its attribute's length are 16-bit, and an alternative takes up to
# 20 bytes (a range and its JMP). Beyond, no filter: the decoder alone selects (the same rows, more kernel work).
MAX_FILTER_RANGES = 3000
# linux/inet_diag.h: bytecode operations
BC_JMP, BC_S_GE, BC_S_LE, BC_D_GE, BC_D_LE, BC_S_EQ, BC_D_EQ = 1, 2, 3, 4, 5, 11, 12
TCP_CA_RECOVERY = 3  # tcpi_ca_state: 3 Recovery (fast retransmit), 4 Loss (retransmission timeout)

# Columns of a row, after which come the RTT buckets then the minimum RTT buckets (+Inf last in each).
SUMS = ("connections", "rtt_us", "min_rtt_samples", "min_rtt_us", "total_retrans", "retrans", "lost", "unacked",
        "notsent_bytes", "busy_time_us", "rwnd_limited_us", "sndbuf_limited_us", "in_recovery", "zero_window",
        "segs_out", "bytes_acked", "bytes_received")
COL = {name: i for i, name in enumerate(SUMS)}
_INFO_FIELDS = ("ca_state", "lost", "retrans", "unacked", "rtt", "total_retrans", "bytes_acked", "bytes_received",
                "segs_out", "notsent_bytes", "min_rtt", "busy_time", "rwnd_limited", "sndbuf_limited", "snd_wnd")
_ORDER = sorted(_INFO_FIELDS, key=lambda name: tcpinfo.OFFSETS[name][0])


def _info_struct() -> struct.Struct:
    fmt, at = "=", 0
    for name in _ORDER:
        offset, code = tcpinfo.OFFSETS[name]
        fmt += f"{offset - at}x{code}" if offset > at else code
        at = offset + struct.calcsize("=" + code)
    return struct.Struct(fmt)


_INFO = _info_struct()
_INFO_NEEDED = _INFO.size  # a tcp_info this long holds every field read (kernel >= 5.4); shorter ones are padded
_MSG = struct.Struct("=BBxxHH")  # family, state, sport, dport (network order, read natively: see tally.port_tables)
_INDEX = {name: _ORDER.index(name) for name in _INFO_FIELDS}


def request(family: int, ports: Sequence[Tuple[str, int, int]] = ()) -> bytes:
    """inet_diag_req_v2 for the connected TCP sockets of a family with INET_DIAG_INFO; with a port filter when
    ports (see :func:`port_filter`) are given."""
    req = struct.pack("=BBBBI", family, c.IPPROTO_TCP, 1 << (c.INET_DIAG_INFO - 1), 0, CONNECTED_STATES) + bytes(48)
    if ports:
        code = port_filter(ports)
        req += struct.pack("=HH", 4 + len(code), INET_DIAG_REQ_BYTECODE) + code
    return req


def port_ranges(ports: Iterable[int]) -> List[Tuple[int, int]]:
    """Sorted ports as (low, high) ranges of consecutive ports."""
    ranges: List[List[int]] = []
    for port in sorted(set(ports)):
        if ranges and port == ranges[-1][1] + 1:
            ranges[-1][1] = port
        else:
            ranges.append([port, port])
    return [(low, high) for low, high in ranges]


def scope(local_ports: Iterable[int], ranges: Sequence[Tuple[str, int, int]]) -> List[Tuple[str, int, int]]:
    """The (side, low, high) ranges a dump must cover: the local ports given (listeners) and ranges (port groups),
    without repeats."""
    found = [("local", low, high) for low, high in port_ranges(local_ports)]
    return list(dict.fromkeys(found + list(ranges)))


def port_filter(ports: Sequence[Tuple[str, int, int]]) -> bytes:
    """INET_DIAG_REQ_BYTECODE accepting a socket whose port matches any of the (side, low, high) ranges, side
    "local" (sport) or "remote" (dport), compiled as ss compiles "( sport = :80 or ( dport >= :8000 and dport <=
    :8099 ) ... )".

    The kernel runs the ops from the start: a true condition moves on by `yes` bytes, a false one by `no`; landing
    exactly at the end accepts, 4 bytes past it rejects (inet_diag_bc_run). The kernel's audit follows the `yes`
    chain and accepts a `no` only if it lands on that chain (valid_cc), hence ss's shape: each alternative's ops
    say yes to the next op, and a JMP after each alternative but the last jumps to the end (accept); a failed
    condition jumps past that JMP to the next alternative, or, in the last one, 4 bytes past the end. A single
    port is one EQ op (8 bytes with its port op), a range GE then LE (16 bytes).
    """
    sizes = [8 if low == high else 16 for _, low, high in ports]
    total = sum(sizes) + 4 * (len(sizes) - 1)
    code, at = b"", 0
    for i, ((side, low, high), size) in enumerate(zip(ports, sizes)):
        local = side == "local"
        last = i == len(sizes) - 1
        fail = total + 4 if last else at + size + 4  # where a failed condition goes, from the start
        if low == high:
            code += _op(BC_S_EQ if local else BC_D_EQ, 8, fail - at) + _op(0, 0, low)
        else:
            code += _op(BC_S_GE if local else BC_D_GE, 8, fail - at) + _op(0, 0, low)
            code += _op(BC_S_LE if local else BC_D_LE, 8, fail - at - 8) + _op(0, 0, high)
        at += size
        if not last:
            code += _op(BC_JMP, 4, total - at)
            at += 4
    return code


def _op(code: int, yes: int, no: int) -> bytes:
    return struct.pack("=BBH", code, yes, no)


def ss_expression(ports: Sequence[Tuple[str, int, int]]) -> str:
    """The same filter as an ss expression (for the tests and the docs)."""
    terms = []
    for side, low, high in ports:
        name = "sport" if side == "local" else "dport"
        terms.append(f"{name} = :{low}" if low == high else f"( {name} >= :{low} and {name} <= :{high} )")
    return "( " + " or ".join(terms) + " )"


class HealthKey(NamedTuple):
    family: int  # 0 inet, 1 inet6
    direction: int  # 0 outbound, 1 inbound


class HealthTally:
    """Rows of one dump: listeners[(family index, port in host order)] of inbound connections, and groups[(port
    group mask, family index, direction)]; each row [SUMS..., RTT buckets..., min RTT buckets...]."""

    def __init__(self, bounds: Sequence[int]):
        self.bounds = tuple(bounds)  # microseconds
        self.width = len(SUMS) + 2 * (len(self.bounds) + 1)
        self.listeners: Dict[int, List[int]] = {}  # native port << 1 | family
        self.groups: Dict[int, List[int]] = {}  # mask << 2 | direction << 1 | family
        self.sockets = 0  # every socket the dump returned
        self.other = 0  # sockets neither inbound nor in a port group

    def new_row(self) -> List[int]:
        return [0] * self.width

    def by_listener(self) -> Iterator[Tuple[int, int, List[int]]]:
        """(family index, local port in host order, row)."""
        for packed, row in self.listeners.items():
            yield packed & 1, _host_port(packed >> 1), row

    def in_group(self, bit: int) -> Iterator[Tuple[HealthKey, List[int]]]:
        for packed, row in self.groups.items():
            if packed >> 2 & (1 << bit):
                yield HealthKey(packed & 1, packed >> 1 & 1), row

    def histograms(self, row: List[int]) -> Tuple[List[int], List[int]]:
        """(RTT buckets, min RTT buckets) of a row, +Inf last, not cumulative."""
        n = len(self.bounds) + 1
        start = len(SUMS)
        return row[start : start + n], row[start + n : start + 2 * n]


def _host_port(native: int) -> int:
    return struct.unpack("!H", struct.pack("=H", native))[0]


class HealthDecoder(Decoder):
    """Streams a dump of :func:`request` into a HealthTally.

    listening: 65536 bytes, native-order port -> bit 0 an inet listener, bit 1 an inet6 one (the inbound test, as
    in flows.FlowDecoder); port_groups: (local, remote) tables of tally.port_tables, or None; only: see below
    (the kernel filter of the request already drops most others; this makes the rows exact, whatever the
    filter).
    """

    def __init__(self, seq: int, what: str, bounds: Sequence[int], listening, port_groups=None,
                 only: Sequence[int] = ()):
        super().__init__(INET_LAYOUT, seq, what)
        self.tally = HealthTally(bounds)
        self.listening = listening
        self.groups = port_groups
        # only: the indices of the port groups whose connections alone count (none: every connection), kept as the
        # group mask the port tables give, so the collector need not know how group bits are packed
        self.only = sum(1 << bit for bit in only)
        self._info_at = -1  # where INET_DIAG_INFO's header sat in the last message, from the message's start

    def _message(self, buf, off, end):
        payload = off + c.NLMSG_HDRLEN
        family, state, lport, rport = _MSG.unpack_from(buf, payload)
        tally = self.tally
        tally.sockets += 1
        fam = 1 if family == c.AF_INET6 else 0
        inbound = self.listening[lport] >> fam & 1
        mask = 0
        if self.groups is not None:
            mask = self.groups[0][lport] | self.groups[1][rport]
        if (not inbound and not mask) or (self.only and not mask & self.only):
            tally.other += 1
            return
        info = self._info(buf, off, end)
        if info is None:  # a mini socket: a closed connection in FIN-WAIT-2 waits as a time-wait socket
            tally.other += 1
            return
        whole = len(info) >= _INFO_NEEDED  # else a kernel older than 5.4: no tcpi_snd_wnd, no zero-window count
        values = _INFO.unpack_from(info) if whole else _INFO.unpack_from(tcpinfo.padded(info))
        rows = []
        if inbound:  # (the listening table and lport are both in native order)
            key = lport << 1 | fam
            row = tally.listeners.get(key)
            if row is None:
                row = tally.listeners[key] = tally.new_row()
            rows.append(row)
        if mask:
            if self.only:
                mask &= self.only
            key = mask << 2 | inbound << 1 | fam
            row = tally.groups.get(key)
            if row is None:
                row = tally.groups[key] = tally.new_row()
            rows.append(row)
        _add(rows, values, state == c.TCP_ESTABLISHED, whole, tally.bounds)

    def _info(self, buf, off: int, end: int):
        """The tcp_info of a message: at the same place as in the last message when it is there (every message of
        a dump has the same attributes), else found by walking the attributes; None for a socket without one (a
        time-wait socket standing in for an orphaned FIN-WAIT-2 connection: tcp_time_wait, reported in its
        substate; its full socket was freed and the destroy event counted it)."""
        at = self._info_at
        if at > 0 and off + at + 4 <= end:
            alen, atype = struct.unpack_from("=HH", buf, off + at)
            if atype & c.NLA_TYPE_MASK == c.INET_DIAG_INFO and off + at + alen <= end and alen >= 4:
                return buf[off + at + 4 : off + at + alen]
        found = walk_attrs(buf, off + c.NLMSG_HDRLEN + c.INET_DIAG_MSG_SIZE, end)
        where = found.get(c.INET_DIAG_INFO)
        if where is None:
            return None
        self._info_at = where[0] - 4 - off
        return buf[where[0] : where[0] + where[1]]


_I = _INDEX
_CA, _LOST, _RETRANS, _UNACKED, _RTT = _I["ca_state"], _I["lost"], _I["retrans"], _I["unacked"], _I["rtt"]
_TOTAL, _ACKED, _RECEIVED, _SEGS = _I["total_retrans"], _I["bytes_acked"], _I["bytes_received"], _I["segs_out"]
_NOTSENT, _MIN, _BUSY, _RWND, _SNDBUF, _WND = (_I["notsent_bytes"], _I["min_rtt"], _I["busy_time"],
                                              _I["rwnd_limited"], _I["sndbuf_limited"], _I["snd_wnd"])


def _add(rows, v, established: bool, window_known: bool, bounds) -> None:
    acked, received = v[_ACKED], v[_RECEIVED]
    if not established:
        for row in rows:
            row[15] += acked
            row[16] += received
        return
    rtt, min_rtt = v[_RTT], v[_MIN]
    sampled = min_rtt != tcpinfo.NO_RTT_SAMPLE
    base = len(SUMS)
    rtt_bucket = base + bisect_left(bounds, rtt)
    min_bucket = base + len(bounds) + 1 + bisect_left(bounds, min_rtt) if sampled else -1
    recovery = 1 if v[_CA] >= TCP_CA_RECOVERY else 0
    zero = 1 if window_known and v[_WND] == 0 else 0
    for row in rows:
        row[0] += 1
        row[1] += rtt
        if sampled:
            row[2] += 1
            row[3] += min_rtt
            row[min_bucket] += 1
        row[4] += v[_TOTAL]
        row[5] += v[_RETRANS]
        row[6] += v[_LOST]
        row[7] += v[_UNACKED]
        row[8] += v[_NOTSENT]
        row[9] += v[_BUSY]
        row[10] += v[_RWND]
        row[11] += v[_SNDBUF]
        row[12] += recovery
        row[13] += zero
        row[14] += v[_SEGS]
        row[15] += acked
        row[16] += received
        row[rtt_bucket] += 1
