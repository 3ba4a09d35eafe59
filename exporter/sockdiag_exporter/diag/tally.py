"""What a dump counts: per key, sockets and value sums; and, when asked, queue histograms, port groups, cgroups,
remote and local endpoints; and TIME_WAIT minisockets.

The decoders write into a :class:`Tally`; collectors read it back through :meth:`Tally.entries`,
:meth:`Tally.in_group`, :meth:`Tally.by_cgroup`, :meth:`Tally.minisockets`, :meth:`Tally.by_remote` and
:meth:`Tally.by_local`, which hand out keys already split into named parts.
"""

import array
import socket
import sys
from collections import Counter
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

from .layout import Layout

# A TIME_WAIT minisocket (inet_twsk_diag_fill) reports its substate, TCP_FIN_WAIT2 or TCP_TIME_WAIT, and idiag_timer 3
TIMEWAIT_TIMER = 3
MINISOCKET_STATES = (5, 6)


class Detail(NamedTuple):
    """What a dump tallies beyond counts and sums.

    bounds: histogram bucket upper bounds for the receive and send queue (value 0 and 1); empty for none.
    port_groups: (local, remote) tables from port_tables(); None for no port groups.
    cgroup_attr: the attribute type carrying the socket's cgroup v2 id (INET_DIAG_CGROUP_ID) to tally by, or 0.
    ephemeral: a table by local port (see port_tables), non-zero for the ports whose sockets are counted per remote
        endpoint and local address (inet); None for none.
    local_state: the key (state byte) of the sockets also tallied per local endpoint (inet), or -1 for none.
    local_ports: with local_state, a table by local port: only the sockets on ports non-zero in it are tallied per
        local endpoint; None for all of them.
    """

    bounds: Tuple[int, ...] = ()
    port_groups: Optional[Tuple[Sequence[int], Sequence[int]]] = None
    cgroup_attr: int = 0
    ephemeral: Optional[Sequence[int]] = None
    local_state: int = -1
    local_ports: Optional[Sequence[int]] = None


NO_DETAIL = Detail()


def _native_ports() -> array.array:
    """NATIVE[port]: the port's network-order bytes read as a native u16 (byte-swapped on little-endian hosts). An
    array: 128 KiB, where a list would hold 65536 int objects (2 MiB)."""
    ports = array.array("H", range(65536))
    if sys.byteorder == "little":
        ports.byteswap()
    return ports


NATIVE = _native_ports()


def port_tables(groups: Sequence[Tuple[Sequence[int], Sequence[int]]]) -> Tuple[list, list]:
    """(local, remote) lookup tables for groups of (local ports, remote ports): bit i set = in group i.

    The tables are indexed by a port as a *native-order* read of its network-order bytes returns it, which is how
    the decoders read it: the hot loops then need no byte swap per message.
    """
    local, remote = [0] * 65536, [0] * 65536
    for bit, (local_ports, remote_ports) in enumerate(groups):
        for table, ports in ((local, local_ports), (remote, remote_ports)):
            for port in ports:
                table[NATIVE[port]] |= 1 << bit
    return local, remote


def port_table(ports=(), low: int = 0, high: int = -1, without=()) -> list:
    """A table by port (indexed as port_tables' are): 1 for each of ports and each port from low to high but those
    in without, else 0."""
    flags = [0] * low + [1] * (high - low + 1) + [0] * (65535 - max(high, low - 1))
    for port in ports:
        flags[port] = 1
    for port in without:
        flags[port] = 0
    return list(map(flags.__getitem__, NATIVE))  # NATIVE is its own inverse: a byte swap or nothing


def _count(table: dict, packed: int, rq: int, wq: int) -> None:
    """One more socket, with its queues, in table's row packed."""
    row = table.get(packed)
    if row is None:
        row = table[packed] = [0, 0, 0]
    row[0] += 1
    row[1] += rq
    row[2] += wq


class Entry(NamedTuple):
    key: tuple  # the layout's Key: named parts
    row: List[int]  # [socket count, sum of value 0, sum of value 1, ...]
    hist: Optional[List[List[int]]]  # [receive queue buckets, send queue buckets] (+Inf last), or None


class Remote(NamedTuple):
    """Where sockets on ephemeral local ports go: their local address, the remote address (16 bytes each, an IPv4
    address in the first 4) and the remote port (host order)."""

    local: bytes
    address: bytes
    port: int


class Local(NamedTuple):
    """A local endpoint: address (16 bytes, IPv4 in the first 4), port (host order), bound device index or 0."""

    address: bytes
    port: int
    ifindex: int


class Tally:
    """key -> [count, value sums...] of one dump, with optional histograms, port-group, cgroup and endpoint rows,
    and the count of TIME_WAIT minisockets per key.

    Port-group rows are kept per (group bit mask, key) and cgroup rows per (cgroup id, key), packed into one int
    (mask or id << 8 | key: both only exist for inet layouts, whose key is a byte). Remote endpoints are counted by
    the 34 bytes from the remote port to the end of the remote address (remote port in network order, local
    address, remote address), local endpoints kept as rows per (local port as read natively, local address, device
    index): the forms the decoders read them in.
    """

    __slots__ = ("layout", "bounds", "rows", "hist", "groups", "cgroups", "timewait", "remotes", "locals")

    def __init__(self, layout: Layout, bounds: Tuple[int, ...] = ()):
        self.layout = layout
        self.bounds = bounds
        self.rows = {}
        self.hist = {}
        self.groups = {}
        self.cgroups = {}
        self.timewait = {}
        self.remotes = Counter()
        self.locals = {}

    # --- writing (decoders, procfs) ---

    def row(self, key: int) -> list:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0] * (self.layout.nvalues + 1)
        return row

    def add(self, key: int, index: int, value: int) -> None:
        self.row(key)[index] += value

    def buckets(self, key: int) -> list:
        hist = self.hist.get(key)
        if hist is None:
            width = len(self.bounds) + 1
            hist = self.hist[key] = [[0] * width, [0] * width]
        return hist

    def add_hist(self, key: int, index: int, bucket: int, count: int = 1) -> None:
        """count more values of queue index (0 receive, 1 send) in bucket."""
        self.buckets(key)[index][bucket] += count

    def add_group(self, mask: int, key: int, rq: int, wq: int) -> None:
        _count(self.groups, mask << 8 | key, rq, wq)

    def add_cgroup(self, cgroup: int, key: int, rq: int, wq: int) -> None:
        _count(self.cgroups, cgroup << 8 | key, rq, wq)

    def add_minisockets(self, key: int, count: int = 1) -> None:
        """count more sockets of key on the TIME_WAIT timer."""
        self.timewait[key] = self.timewait.get(key, 0) + count

    def add_remotes(self, remotes) -> None:
        """One more socket for each remote endpoint key (remote port, local address, remote address) of remotes."""
        self.remotes.update(remotes)

    def add_local(self, endpoint: tuple, values: Sequence[int]) -> None:
        """One more socket, with its values, at endpoint (local port as read natively, local address, device)."""
        row = self.locals.get(endpoint)
        if row is None:
            row = self.locals[endpoint] = [0] * (self.layout.nvalues + 1)
        row[0] += 1
        for i, value in enumerate(values, 1):
            row[i] += value

    def merge(self, other: "Tally") -> "Tally":
        """Add other's sockets (a dump of other states of the same sockets' family, filled) to this tally; self."""
        for table, theirs in ((self.rows, other.rows), (self.groups, other.groups), (self.cgroups, other.cgroups),
                              (self.locals, other.locals)):
            for key, row in theirs.items():
                mine = table.setdefault(key, [0] * len(row))
                for i, value in enumerate(row):
                    mine[i] += value
        for key, hist in other.hist.items():
            for mine, theirs in zip(self.buckets(key), hist):
                for bucket, count in enumerate(theirs):
                    mine[bucket] += count
        for key, count in other.timewait.items():
            self.add_minisockets(key, count)
        self.remotes.update(other.remotes)
        return self

    def fill_zero_buckets(self) -> None:
        """Put every socket not yet in a bucket into bucket 0.

        The decoders bucket only non-zero values (most queues are empty, and skipping them is what keeps the
        histograms cheap); a socket whose value was 0, or absent, belongs to bucket 0 since every bound is >= 0.
        """
        if not self.bounds or self.layout.nvalues < 2:
            return
        for key, row in self.rows.items():
            for buckets in self.buckets(key):
                buckets[0] += row[0] - sum(buckets)

    # --- reading (collectors) ---

    def entries(self) -> Iterator[Entry]:
        split = self.layout.split
        for key, row in self.rows.items():
            yield Entry(split(key), row, self.hist.get(key))

    def in_group(self, bit: int) -> Iterator[Tuple[tuple, List[int]]]:
        """(key, [count, receive queue, send queue]) of the sockets in port group number bit."""
        split = self.layout.split
        for packed, row in self.groups.items():
            if packed >> 8 & (1 << bit):
                yield split(packed & 0xFF), row

    def by_cgroup(self) -> Iterator[Tuple[int, tuple, List[int]]]:
        """(cgroup id, key, [count, receive queue, send queue]); id 0: the socket carried none."""
        split = self.layout.split
        for packed, row in self.cgroups.items():
            yield packed >> 8, split(packed & 0xFF), row

    def minisockets(self) -> Iterator[Tuple[tuple, int]]:
        """(key, count) of the kernel's TIME_WAIT minisockets: in FIN_WAIT2 or TIME_WAIT, on the TIME_WAIT timer."""
        split = self.layout.split
        for key, count in self.timewait.items():
            yield split(key), count

    def by_remote(self, most: Optional[int] = None) -> Iterator[Tuple[Remote, int]]:
        """(Remote, sockets) of the sockets on ephemeral local ports, the busiest first: the most busiest, or all."""
        for key, count in self.remotes.most_common(most):
            yield Remote(key[2:18], key[18:34], int.from_bytes(key[:2], "big")), count

    def busiest_remote(self) -> int:
        """Sockets towards the busiest (local address, remote address, remote port); 0 for none."""
        return max(self.remotes.values(), default=0)

    def remote_destinations(self) -> int:
        """How many (remote address, remote port) the remote endpoints have, whatever their local address."""
        return len({key[:2] + key[18:] for key in self.remotes})

    def by_local(self) -> Iterator[Tuple[Local, List[int]]]:
        """(Local, [count, value sums...]) of the sockets tallied per local endpoint."""
        for (port, address, ifindex), row in self.locals.items():
            yield Local(address, socket.ntohs(port), ifindex), row
