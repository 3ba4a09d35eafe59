"""What a dump counts: per key, sockets and value sums; and, when asked, queue histograms, port groups and cgroups.

The decoders write into a :class:`Tally`; collectors read it back through :meth:`Tally.entries`,
:meth:`Tally.in_group` and :meth:`Tally.by_cgroup`, which hand out keys already split into named parts.
"""

import struct
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

from .layout import Layout


class Detail(NamedTuple):
    """What a dump tallies beyond counts and sums.

    bounds: histogram bucket upper bounds for the receive and send queue (value 0 and 1); empty for none.
    port_groups: (local, remote) tables from port_tables(); None for no port groups.
    cgroup_attr: the attribute type carrying the socket's cgroup v2 id (INET_DIAG_CGROUP_ID) to tally by, or 0.
    """

    bounds: Tuple[int, ...] = ()
    port_groups: Optional[Tuple[Sequence[int], Sequence[int]]] = None
    cgroup_attr: int = 0


NO_DETAIL = Detail()


def port_tables(groups: Sequence[Tuple[Sequence[int], Sequence[int]]]) -> Tuple[list, list]:
    """(local, remote) lookup tables for groups of (local ports, remote ports): bit i set = in group i.

    The tables are indexed by a port as a *native-order* read of its network-order bytes returns it, which is how
    the decoders read it: the hot loops then need no byte swap per message.
    """
    local, remote = [0] * 65536, [0] * 65536
    for bit, (local_ports, remote_ports) in enumerate(groups):
        for table, ports in ((local, local_ports), (remote, remote_ports)):
            for port in ports:
                table[struct.unpack("=H", struct.pack("!H", port))[0]] |= 1 << bit
    return local, remote


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


class Tally:
    """key -> [count, value sums...] of one dump, with optional histograms, port-group and cgroup rows.

    Port-group rows are kept per (group bit mask, key) and cgroup rows per (cgroup id, key), packed into one int
    (mask or id << 8 | key: both only exist for inet layouts, whose key is a byte).
    """

    __slots__ = ("layout", "bounds", "rows", "hist", "groups", "cgroups")

    def __init__(self, layout: Layout, bounds: Tuple[int, ...] = ()):
        self.layout = layout
        self.bounds = bounds
        self.rows = {}
        self.hist = {}
        self.groups = {}
        self.cgroups = {}

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
