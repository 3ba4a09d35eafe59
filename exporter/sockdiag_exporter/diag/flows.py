"""Destroy events decoded into flow counters: each closed TCP connection counted once, by family, direction and
outcome, its tcp_info totals summed; each closed UDP socket counted by family.

The kernel sends one SOCK_DIAG_BY_FAMILY message per freed socket (sock_diag_broadcast_destroy): inet_diag_msg
(with idiag_state always TCP_CLOSE by then), INET_DIAG_PROTOCOL and, for TCP, INET_DIAG_INFO (struct tcp_info).
:class:`FlowDecoder` walks the receive buffer in place, one struct call per event, and adds into flat lists of
:class:`FlowTally`; nothing is kept per event or per connection.

How an event is classified (measured on Linux 6.18 with real connections; README "Connection flows"):

- tcpi_pmtu 0: the socket never looked up a route, so it never connected nor was accepted (a listener, a socket
  closed before connect()): not a connection, counted in ``ignored``.
- established ("the handshake completed"): tcpi_bytes_acked or tcpi_bytes_received above 0, or tcpi_snd_wnd above
  0 (the peer's SYN or SYN-ACK gave us its window), or tcpi_min_rtt measured. The last two survive the kernel's
  disconnect path (tcp_disconnect), which zeroes the counters and the remote port when an established connection is
  aborted locally (close() with SO_LINGER 0, a listener closed with connections not yet accepted) and when a
  blocking connect() fails.
  - remote port 0 (disconnected): RESET;
  - tcpi_retransmits above 0 (a retransmission was never acknowledged): TIMEOUT;
  - idiag_rqueue of 2 or more (unread data; a FIN alone counts 1): RESET (closing with unread data sends a RST);
  - otherwise COMPLETED. A reset received after every byte was read cannot be told from a close: COMPLETED.
- not established (a connect that never completed):
  - remote port kept (a non-blocking connect, then close()): REFUSED if a segment came back (the RST), else
    UNANSWERED (the SYNs got no answer before the kernel or the application gave up);
  - remote port 0 (a blocking connect() failed and disconnected): UNANSWERED if a SYN was retransmitted
    (tcpi_retransmits survives the disconnect), else REFUSED.

Direction: INBOUND when the local port is a listening port of the same family in the latest listener set
(:meth:`FlowDecoder.listen`), else OUTBOUND.
"""

import struct
from bisect import bisect_left
from typing import Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from . import constants as c
from . import tcpinfo
from .attrs import walk_attrs
from .errors import DiagMalformed
from .layout import offsets_struct
from .tally import _count

COMPLETED, RESET, TIMEOUT, REFUSED, UNANSWERED = range(5)
OUTCOMES = 5
INET, INET6 = 0, 1  # family index
OUTBOUND, INBOUND = 0, 1
KEYS = 2 * 2 * 8  # family (bit 0) | direction (bit 1) | outcome (bits 2-4)
# Sums per key, after the connection count: what the kernel counted over each connection's life.
SUMS = ("bytes_acked", "bytes_received", "segs_out", "segs_in", "total_retrans", "bytes_retrans")

_INFO_FIELDS = ("retransmits", "pmtu", "rtt", "total_retrans", "bytes_acked", "bytes_received", "segs_out", "segs_in",
                "min_rtt", "bytes_retrans", "snd_wnd")
_PROTOCOL_AT = c.INET_DIAG_MSG_SIZE  # payload offset of INET_DIAG_PROTOCOL, the first attribute
_INFO_AT = _PROTOCOL_AT + 8 + c.NLA_HDRLEN  # payload offset of tcp_info when INET_DIAG_INFO comes second
# The shape every TCP event of this kernel has: header words of both attributes, and the fields to read.
_TCP_PROTOCOL = 5 | c.INET_DIAG_PROTOCOL << 16  # nla_len 5 (u8), nla_type
_EVENT = offsets_struct([(0, "B"), (4, "H"), (6, "H"), (56, "I"), (_PROTOCOL_AT, "I"), (_PROTOCOL_AT + 4, "B"),
                          (_PROTOCOL_AT + 8, "I")] + list(tcpinfo.fields(_INFO_FIELDS, _INFO_AT)), head=True)
_FAST_INFO = tcpinfo.OFFSETS["snd_wnd"][0] + 4  # a tcp_info at least this long is read in place
_FAST_MIN = c.NLMSG_HDRLEN + _INFO_AT + _FAST_INFO
_INFO_END = c.NLMSG_HDRLEN + _INFO_AT - c.NLA_HDRLEN  # + nla_len: where INET_DIAG_INFO ends
_PLAIN = c.SOCK_DIAG_BY_FAMILY  # nlmsg_type | nlmsg_flags << 16 of an event (flags 0)
_CANONICAL_LENGTH = c.NLMSG_HDRLEN + _INFO_AT + tcpinfo.SIZE
_HEAD = struct.Struct("=IHH")


def native_port(port: int) -> int:
    """A port (host order) as a native-order read of its network-order bytes returns it (how events are read)."""
    return struct.unpack("=H", struct.pack("!H", port))[0]


def listening_table(ports: Iterable[Tuple[int, int]]) -> bytearray:
    """native-order port -> bit 0: an inet listener, bit 1: an inet6 one, from (family index, host-order port)."""
    table = bytearray(65536)
    for family, port in ports:
        table[native_port(port)] |= 1 << family
    return table


class FlowKey(NamedTuple):
    family: int  # INET or INET6
    direction: int  # OUTBOUND or INBOUND
    outcome: int  # COMPLETED ... UNANSWERED


def _split(key: int) -> FlowKey:
    return FlowKey(key & 1, key >> 1 & 1, key >> 2)


class FlowTally:
    """Counters of closed connections, kept for the life of a subscriber (never reset: Prometheus counters).

    rows[key]: [connections, then the SUMS]; listeners and groups: [connections, bytes_acked, bytes_received] per
    (native-order local port or port-group mask) << 5 | key; rtt[direction]: bucket counts (+Inf last) of tcpi_rtt
    at close of established connections, rtt_sum[direction] their sum in microseconds; udp[family]: UDP sockets
    closed. events: every message; ignored: sockets that were never connections; malformed: events that could not
    be read.
    """

    __slots__ = ("bounds", "rows", "listeners", "groups", "rtt", "rtt_sum", "udp", "events", "ignored", "malformed")

    def __init__(self, bounds: Sequence[int] = ()):
        self.bounds = tuple(bounds)  # microseconds
        self.rows = [[0] * (1 + len(SUMS)) for _ in range(KEYS)]
        self.listeners = {}
        self.groups = {}
        self.rtt = [[0] * (len(self.bounds) + 1) for _ in range(2)]
        self.rtt_sum = [0, 0]
        self.udp = [0, 0]
        self.events = self.ignored = self.malformed = 0

    def copy(self) -> "FlowTally":
        other = FlowTally(self.bounds)
        other.rows = [list(row) for row in self.rows]
        other.listeners = {k: list(v) for k, v in self.listeners.items()}
        other.groups = {k: list(v) for k, v in self.groups.items()}
        other.rtt = [list(b) for b in self.rtt]
        other.rtt_sum = list(self.rtt_sum)
        other.udp = list(self.udp)
        other.events, other.ignored, other.malformed = self.events, self.ignored, self.malformed
        return other

    # --- reading (collectors) ---

    def connections(self) -> Iterator[Tuple[FlowKey, List[int]]]:
        """(key, [connections, SUMS...]) of every key with at least one connection."""
        for key, row in enumerate(self.rows):
            if row[0]:
                yield _split(key), row

    def by_listener(self) -> Iterator[Tuple[FlowKey, int, List[int]]]:
        """(key, local port in host order, [connections, bytes_acked, bytes_received]) of inbound connections."""
        for packed, row in self.listeners.items():
            yield _split(packed & 0x1F), native_port(packed >> 5), row

    def in_group(self, bit: int) -> Iterator[Tuple[FlowKey, List[int]]]:
        """(key, [connections, bytes_acked, bytes_received]) of connections in port group number bit."""
        for packed, row in self.groups.items():
            if packed >> 5 & (1 << bit):
                yield _split(packed & 0x1F), row

    def rtt_histogram(self, direction: int) -> Tuple[List[int], int]:
        """(bucket counts, +Inf last; sum in microseconds) of the round-trip times at close in one direction."""
        return self.rtt[direction], self.rtt_sum[direction]


class FlowDecoder:
    """Walks receive buffers of destroy events and tallies them; see the module's docstring for the rules.

    bounds: RTT histogram bucket bounds in microseconds; port_groups: (local, remote) tables of tally.port_tables.
    """

    def __init__(self, bounds: Sequence[int] = (), port_groups: Optional[Tuple[Sequence[int], Sequence[int]]] = None):
        self.tally = FlowTally(bounds)
        self.port_groups = port_groups
        self.listening = bytearray(65536)  # native-order port -> bit 0: an inet listener, bit 1: an inet6 one
        self._scratch = bytearray(_CANONICAL_LENGTH)

    def listen(self, ports: Iterable[Tuple[int, int]]) -> None:
        """The listening ports from now on: (family index, port in host order) pairs."""
        self.listening = listening_table(ports)  # one assignment: the walk reads the old or the new table

    def feed(self, buf, start: int, end: int) -> None:
        """One datagram: the messages in buf[start:end]."""
        self.feed_slots(buf, 1, 0, (end - start,), start)

    def feed_slots(self, buf, count: int, slot: int, lengths: Sequence[int], base: int = 0) -> None:
        """count datagrams, datagram i at base + i * slot and lengths[i] bytes long (as recvmmsg leaves them).

        The hot loop: one struct call per TCP event of the usual shape, everything else in _other.
        """
        tally = self.tally
        rows, listeners, groups, rtt, rtt_sum = tally.rows, tally.listeners, tally.groups, tally.rtt, tally.rtt_sum
        bounds = tally.bounds
        listening = self.listening
        local_groups, remote_groups = self.port_groups or (None, None)
        unpack = _EVENT.unpack_from
        add_row = _count
        no_sample = tcpinfo.NO_RTT_SAMPLE
        for i in range(count):
            off = base + i * slot
            size = lengths[i]
            if size < _FAST_MIN:
                self._other(buf, off, off + size)
                continue
            (length, tag, family, lport, rport, rq, proto_attr, protocol, info_attr, retransmits, pmtu, rtt_us,
             retrans, acked, received, segs_out, segs_in, min_rtt, bytes_retrans, snd_wnd) = unpack(buf, off)
            if (tag & 0xFFFFFFFF != _PLAIN or length != size or proto_attr != _TCP_PROTOCOL or protocol != c.IPPROTO_TCP
                    or info_attr >> 16 != c.INET_DIAG_INFO or (info_attr & 0xFFFF) - c.NLA_HDRLEN < _FAST_INFO
                    or _INFO_END + (info_attr & 0xFFFF) > length or (family != c.AF_INET and family != c.AF_INET6)):
                self._other(buf, off, off + size)
                continue
            tally.events += 1
            if not pmtu:
                tally.ignored += 1
                continue
            fam = 1 if family == c.AF_INET6 else 0
            inbound = listening[lport] >> fam & 1
            if acked or received or snd_wnd or min_rtt != no_sample:
                if not rport:
                    outcome = RESET
                elif retransmits:
                    outcome = TIMEOUT
                elif rq >= 2:
                    outcome = RESET
                else:
                    outcome = COMPLETED
                if rtt_us:
                    rtt[inbound][bisect_left(bounds, rtt_us)] += 1
                    rtt_sum[inbound] += rtt_us
            elif rport:
                outcome = REFUSED if segs_in else UNANSWERED
            else:
                outcome = UNANSWERED if retransmits else REFUSED
            key = fam | inbound << 1 | outcome << 2
            row = rows[key]
            row[0] += 1
            row[1] += acked
            row[2] += received
            row[3] += segs_out
            row[4] += segs_in
            row[5] += retrans
            row[6] += bytes_retrans
            if inbound:
                add_row(listeners, lport << 5 | key, acked, received)
            if local_groups is not None:
                mask = local_groups[lport] | remote_groups[rport]
                if mask:
                    add_row(groups, mask << 5 | key, acked, received)

    def _other(self, buf, start: int, end: int) -> None:
        """Anything but a TCP event of the usual shape: UDP events, a shorter or reordered tcp_info (older and newer
        kernels, unknown attributes), several messages in one datagram, garbage (counted, never raised)."""
        tally = self.tally
        off = start
        while end - off >= c.NLMSG_HDRLEN:
            length, mtype, _ = _HEAD.unpack_from(buf, off)
            if length < c.NLMSG_HDRLEN or length > end - off:
                tally.events += 1
                tally.malformed += 1
                return
            tally.events += 1
            if mtype == c.SOCK_DIAG_BY_FAMILY:
                try:
                    self._event(buf, off, off + length)
                except DiagMalformed:
                    tally.malformed += 1
            off += (length + 3) & ~3

    def _event(self, buf, off: int, end: int) -> None:
        payload = off + c.NLMSG_HDRLEN
        if end - payload < c.INET_DIAG_MSG_SIZE:
            raise DiagMalformed(f"a destroy event of {end - off} bytes is shorter than inet_diag_msg")
        family = buf[payload]
        found = walk_attrs(buf, payload + c.INET_DIAG_MSG_SIZE, end)
        where = found.get(c.INET_DIAG_PROTOCOL)
        if where is None or where[1] < 1 or family not in (c.AF_INET, c.AF_INET6):
            raise DiagMalformed("a destroy event without a protocol, or of another family")
        protocol = buf[where[0]]
        if protocol == c.IPPROTO_UDP:
            self.tally.udp[family == c.AF_INET6] += 1
            return
        if protocol != c.IPPROTO_TCP:
            self.tally.ignored += 1  # udplite and others have no destroy group today
            return
        # Rewritten in the usual shape (tcp_info padded with the absent values), then read by the hot loop.
        info = found.get(c.INET_DIAG_INFO)
        scratch = self._scratch
        scratch[: c.NLMSG_HDRLEN + _PROTOCOL_AT] = bytes(buf[off : payload + _PROTOCOL_AT])
        struct.pack_into("=IHH", scratch, 0, _CANONICAL_LENGTH, c.SOCK_DIAG_BY_FAMILY, 0)
        struct.pack_into("=IB3xI", scratch, c.NLMSG_HDRLEN + _PROTOCOL_AT, _TCP_PROTOCOL, c.IPPROTO_TCP,
                         (c.NLA_HDRLEN + tcpinfo.SIZE) | c.INET_DIAG_INFO << 16)
        raw = bytes(buf[info[0] : info[0] + info[1]]) if info else b""
        scratch[c.NLMSG_HDRLEN + _INFO_AT :] = tcpinfo.padded(raw)
        self.tally.events -= 1  # _other counted it; the hot loop counts it again
        self.feed_slots(scratch, 1, 0, (_CANONICAL_LENGTH,))
