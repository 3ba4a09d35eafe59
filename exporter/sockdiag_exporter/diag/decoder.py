"""Streaming decoder of sock_diag dumps.

Each receive buffer is walked in place with ``struct`` and memoryview slices; every message only bumps a counter
and a few sums in a :class:`Tally` keyed by a small integer (a state byte, or the first word of the message).
No object is created per socket and no buffer outlives its walk.

Fast path: the kernel usually sends long runs of messages of equal length whose headers differ in nothing.
For such a run the key bytes and summed u32 fields are read as strided memoryview slices (C speed);
other messages go through a plain per-message loop.
"""

import struct
from bisect import bisect_left, bisect_right
from collections import Counter
from typing import NamedTuple, Optional, Sequence, Tuple

from . import constants as c
from .errors import DiagMalformed, from_errno

_HDR = struct.Struct("=IHHII")
_HEAD = struct.Struct("=III")  # nlmsg_len, nlmsg_type | nlmsg_flags << 16, nlmsg_seq
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_NLA = struct.Struct("=HH")
_PORTS = struct.Struct("=HH")  # idiag_sport, idiag_dport (network order, read natively)
_ERRNO = struct.Struct("=i")

# Runs shorter than this are cheaper in the plain loop.
MIN_RUN = 32
_RUN_FLAGS = c.SOCK_DIAG_BY_FAMILY | (c.NLM_F_MULTI << 16)


def _align4(n: int) -> int:
    return (n + 3) & ~3


class Layout:
    """Where one kind of sock_diag message keeps the key and the values to tally.

    By convention value 0 is the receive queue and value 1 the send queue; memory values follow.

    header: size of the fixed struct after the netlink header; attributes follow it.
    key: (payload offset, width); width 1 reads a byte, width 4 an aligned native u32.
    fields: payload offsets of u32 values summed per key.
    attrs: (attribute type, offset inside its payload) of u32 values summed per key, after the fields;
        a value missing from a message (no such attribute, or a shorter one) counts as 0.
    nest: attribute type whose payload holds the attributes (TIPC), else None.
    key_attrs: attribute types whose u32 values, one byte each, form the key instead of ``key`` (TIPC).
    ports: payload offsets of the local and remote port (network byte order u16), for port groups (inet).
    """

    __slots__ = ("header", "key", "fields", "attrs", "nest", "key_attrs", "fast", "ports")

    def __init__(self, header, key=(0, 1), fields=(), attrs=(), nest=None, key_attrs=(), ports=None):
        for off in tuple(fields) + (key[0] if key[1] == 4 else 0,):
            if off % 4:
                raise ValueError(f"u32 offset {off} is not aligned")
        self.header = header
        self.key = key
        self.fields = tuple(fields)
        self.attrs = tuple(attrs)
        self.nest = nest
        self.key_attrs = tuple(key_attrs)
        self.ports = ports
        self.fast = nest is None and not key_attrs

    @property
    def nvalues(self) -> int:
        return len(self.fields) + len(self.attrs)


class Detail(NamedTuple):
    """What a dump tallies beyond counts and sums.

    bounds: histogram bucket upper bounds for the receive and send queue (value 0 and 1); empty for none.
    port_groups: (local, remote) tables of 65536 group bit masks, indexed by a port as read in native byte order
        from the message (see port_tables); None for no port groups.
    cgroup_attr: the attribute type carrying the socket's cgroup v2 id (INET_DIAG_CGROUP_ID) to tally by, or 0.
        Every message then goes through the attribute-walking loop.
    """

    bounds: Tuple[int, ...] = ()
    port_groups: Optional[Tuple[Sequence[int], Sequence[int]]] = None
    cgroup_attr: int = 0


NO_DETAIL = Detail()


def port_tables(groups: Sequence[Tuple[Sequence[int], Sequence[int]]]) -> Tuple[list, list]:
    """(local, remote) lookup tables for groups of (local ports, remote ports): bit i set = in group i.

    Indexed by the u16 as a native-order read of the network-order port returns it, so the hot loop needs no swap.
    """
    local, remote = [0] * 65536, [0] * 65536
    for bit, (local_ports, remote_ports) in enumerate(groups):
        for table, ports in ((local, local_ports), (remote, remote_ports)):
            for port in ports:
                table[struct.unpack("=H", struct.pack("!H", port))[0]] |= 1 << bit
    return local, remote


class Tally(dict):
    """key -> [socket count, sum of value 0, sum of value 1, ...] for one dump.

    hist: key -> [bucket counts of value 0, bucket counts of value 1], each len(bounds) + 1 long (+Inf last).
    groups: group bit mask << 8 | key -> [count, sum of value 0, sum of value 1], for sockets in a port group.
    cgroups: cgroup id << 8 | key -> [count, sum of value 0, sum of value 1] (id 0: the socket carried none).
    """

    __slots__ = ("nvalues", "hist", "groups", "cgroups")

    def __init__(self, nvalues: int):
        super().__init__()
        self.nvalues = nvalues
        self.hist = {}
        self.groups = {}
        self.cgroups = {}

    def row(self, key: int) -> list:
        row = self.get(key)
        if row is None:
            row = self[key] = [0] * (self.nvalues + 1)
        return row


def walk_attrs(buf, start: int, end: int) -> dict:
    """Attribute type -> (payload offset, payload length) for the attributes in buf[start:end]."""
    found = {}
    while end - start >= c.NLA_HDRLEN:
        alen, atype = _NLA.unpack_from(buf, start)
        if alen < c.NLA_HDRLEN or start + alen > end:
            raise DiagMalformed(f"attribute of length {alen} overruns its message")
        found[atype & c.NLA_TYPE_MASK] = (start + c.NLA_HDRLEN, alen - c.NLA_HDRLEN)
        start += _align4(alen)
    return found


def _offsets_struct(items, head: bool = False) -> struct.Struct:
    """A Struct reading (payload offset, code) items of a message, from the start of its netlink header; with head,
    nlmsg_len, type | flags << 16 and seq come first."""
    fmt, at = ("=III4x", 0) if head else ("=", -c.NLMSG_HDRLEN)
    for offset, code in sorted(items):
        fmt += f"{offset - at}x{code}" if offset > at else code
        at = offset + struct.calcsize("=" + code)
    return struct.Struct(fmt)


def _prefix_equal(col: memoryview, value: int, k: int) -> int:
    """How many leading u32 elements of col (k of them) equal value."""
    got = col.tobytes()
    want = _U32.pack(value) * k
    if got == want:
        return k
    lo, hi = 0, k  # got[:4*lo] matches, got[:4*hi] does not
    gv, wv = memoryview(got), memoryview(want)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if gv[: 4 * mid] == wv[: 4 * mid]:
            lo = mid
        else:
            hi = mid
    return lo


class DumpDecoder:
    """Tallies the replies to one dump request, buffer by buffer; tally is complete once feed() returned True.

    Three ways through a message: a run of identical messages goes through strided slices; the inet layout
    (state byte, ports, two queues, no attributes) through one struct call and flat 256-slot lists; anything else
    through the attribute-walking loop.
    """

    def __init__(self, layout: Layout, seq: int, what: str, detail: Detail = NO_DETAIL):
        self.layout = layout
        self.seq = seq
        self.what = what
        self.detail = detail
        self.tally = Tally(layout.nvalues)
        self.interrupted = False
        self._cgroup_attr = detail.cgroup_attr if layout.ports else 0  # inet only
        self._fast = layout.fast and not self._cgroup_attr
        self._width = len(detail.bounds) + 1 if detail.bounds else 0
        self._groups = detail.port_groups if layout.ports else None
        self._plain = None
        if self._fast and layout.key[1] == 1 and not layout.attrs and len(layout.fields) == 2 and layout.ports:
            local, remote = layout.ports
            items = [(layout.key[0], "B"), (local, "H"), (remote, "H")] + [(f, "I") for f in layout.fields]
            self._plain = _offsets_struct(items)  # the fields alone
            self._plain_with_head = _offsets_struct(items, head=True)  # header and fields in one call
            self._slots = [[0] * 256 for _ in range(3)]
            self._hist_slots = [[0] * (256 * self._width) for _ in range(2)]

    def feed(self, buf: memoryview, u32: memoryview, n: int) -> bool:
        """Walk the first n bytes of buf (u32 is the same buffer cast to "I"); True once the dump is complete."""
        if self._plain:
            return self._feed_plain(buf, u32, n)
        layout, seq, fast = self.layout, self.seq, self._fast
        min_length = c.NLMSG_HDRLEN + layout.header
        head = _HEAD.unpack_from
        retry_at, backoff = 0, MIN_RUN  # where the next run may be tried; failed tries back off
        off = 0
        while off < n:  # off stays 4-aligned: every stride is
            if n - off < c.NLMSG_HDRLEN:
                raise DiagMalformed(f"{self.what}: truncated netlink header ({n - off} bytes at offset {off})")
            length, typeflags, msg_seq = head(buf, off)
            if length < c.NLMSG_HDRLEN or length > n - off:
                raise DiagMalformed(f"{self.what}: netlink message length {length} at offset {off} of {n}")
            stride = (length + 3) & ~3
            if typeflags != _RUN_FLAGS or msg_seq != seq:
                if self._other(buf, off, length):
                    self._finish()
                    return True
                off += stride
                continue
            if length < min_length:
                raise DiagMalformed(
                    f"{self.what}: message of {length} bytes is shorter than its {layout.header}-byte header")
            if fast and off >= retry_at:
                ahead = off + stride * (MIN_RUN - 1)
                if ahead < n and u32[ahead >> 2] == length:  # cheap guess before the real check
                    taken, retry_at, backoff = self._attempt_run(buf, u32, off, length, stride, n, backoff)
                    if taken:
                        off += taken
                        continue
            self._tally_one(buf, off, off + length)
            off += stride
        return False

    def _feed_plain(self, buf: memoryview, u32: memoryview, n: int) -> bool:
        """feed() for the inet layout: one struct call reads a message's header and every field at once."""
        seq = self.seq
        min_length = c.NLMSG_HDRLEN + self.layout.header
        unpack_all, unpack_fields = self._plain_with_head.unpack_from, self._plain.unpack_from
        whole = len(buf) - self._plain_with_head.size  # past this offset a message is read in two calls
        head = _HEAD.unpack_from
        counts, rq_sums, wq_sums = self._slots
        rq_hist, wq_hist = self._hist_slots
        bounds, width = self.detail.bounds, self._width
        groups = self._groups
        if groups:
            local_groups, remote_groups = groups
        retry_at, backoff = 0, MIN_RUN
        off = 0
        while off < n:
            if n - off < c.NLMSG_HDRLEN:
                raise DiagMalformed(f"{self.what}: truncated netlink header ({n - off} bytes at offset {off})")
            if off <= whole:
                length, typeflags, msg_seq, key, local_port, remote_port, rq, wq = unpack_all(buf, off)
            else:
                length, typeflags, msg_seq = head(buf, off)
                key = None
            if length < c.NLMSG_HDRLEN or length > n - off:
                raise DiagMalformed(f"{self.what}: netlink message length {length} at offset {off} of {n}")
            stride = (length + 3) & ~3
            if typeflags != _RUN_FLAGS or msg_seq != seq:
                if self._other(buf, off, length):
                    self._finish()
                    return True
                off += stride
                continue
            if length < min_length:
                raise DiagMalformed(
                    f"{self.what}: message of {length} bytes is shorter than its {self.layout.header}-byte header")
            if off >= retry_at:
                ahead = off + stride * (MIN_RUN - 1)
                if ahead < n and u32[ahead >> 2] == length:  # cheap guess before the real check
                    taken, retry_at, backoff = self._attempt_run(buf, u32, off, length, stride, n, backoff)
                    if taken:
                        off += taken
                        continue
            if key is None:
                key, local_port, remote_port, rq, wq = unpack_fields(buf, off)
            counts[key] += 1
            if rq:
                rq_sums[key] += rq
                if width:
                    rq_hist[key * width + bisect_left(bounds, rq)] += 1
            if wq:
                wq_sums[key] += wq
                if width:
                    wq_hist[key * width + bisect_left(bounds, wq)] += 1
            if groups:
                mask = local_groups[local_port] | remote_groups[remote_port]
                if mask:
                    self._group(mask, key, rq, wq)
            off += stride
        return False

    def _attempt_run(self, buf, u32, off, length, stride, n, backoff):
        """Tally a run starting at off if there is one: (bytes taken, offset of the next attempt, next backoff).
        A failed attempt backs off, doubling up to 4096 messages, so that mixed buffers do not pay for many."""
        k = self._run_length(buf, u32, off, length, stride, n)
        if k >= MIN_RUN:
            self._tally_run(buf, u32, off, length, stride, k)
            return k * stride, 0, MIN_RUN
        return 0, off + backoff * stride, min(backoff * 2, 4096)

    def _other(self, buf, off, length) -> bool:
        """A message that is not a plain diag reply of this dump; True at the end of the dump."""
        _, mtype, flags, seq, _ = _HDR.unpack_from(buf, off)
        if seq != self.seq:  # a leftover of an earlier request on this socket
            return False
        if flags & c.NLM_F_DUMP_INTR:
            self.interrupted = True
        if mtype == c.SOCK_DIAG_BY_FAMILY:
            if length - c.NLMSG_HDRLEN < self.layout.header:
                raise DiagMalformed(
                    f"{self.what}: message of {length} bytes is shorter than its {self.layout.header}-byte header")
            self._tally_one(buf, off, off + length)
            return False
        if mtype in (c.NLMSG_DONE, c.NLMSG_ERROR):
            # A dump's error arrives in NLMSG_DONE's payload; a refused request as NLMSG_ERROR.
            err = _ERRNO.unpack_from(buf, off + c.NLMSG_HDRLEN)[0] if length >= c.NLMSG_HDRLEN + 4 else 0
            if err < 0:
                raise from_errno(-err, self.what)
            return mtype == c.NLMSG_DONE
        return False  # NLMSG_NOOP, or a type this decoder does not know

    def _finish(self) -> None:
        tally, width = self.tally, self._width
        if self._plain:
            counts, sums = self._slots[0], self._slots[1:]
            for key, count in enumerate(counts):
                if count:
                    row = tally.row(key)
                    row[0] += count
                    for i, column in enumerate(sums, 1):
                        row[i] += column[key]
                    if width:
                        hist = self._hist(key)
                        for i, flat in enumerate(self._hist_slots):
                            for b, n in enumerate(flat[key * width : (key + 1) * width]):
                                hist[i][b] += n
        if width and tally.nvalues >= 2:
            for key, row in tally.items():  # sockets not counted in a bucket had 0 (or no) value: bucket 0
                for buckets in self._hist(key):
                    buckets[0] += row[0] - sum(buckets)

    def _add(self, key: int, index: int, value: int) -> None:
        if self._plain:
            self._slots[index][key] += value
        else:
            self.tally.row(key)[index] += value

    def _hist(self, key: int) -> list:
        hist = self.tally.hist.get(key)
        if hist is None:
            hist = self.tally.hist[key] = [[0] * self._width, [0] * self._width]
        return hist

    def _add_hist(self, key: int, index: int, bucket: int, count: int = 1) -> None:
        """count more values of queue index (0 receive, 1 send) in bucket; the plain loop's own lists if it runs."""
        if self._plain:
            self._hist_slots[index][key * self._width + bucket] += count
        else:
            self._hist(key)[index][bucket] += count

    def _group(self, mask: int, key: int, rq: int, wq: int) -> None:
        row = self.tally.groups.get(mask << 8 | key)
        if row is None:
            row = self.tally.groups[mask << 8 | key] = [0, 0, 0]
        row[0] += 1
        row[1] += rq
        row[2] += wq

    def _run_length(self, buf, u32, off, length, stride, n) -> int:
        """How many messages from off share length, type, flags and seq (and the wanted attributes' places).

        Checked in growing windows, so that a short run costs little however large the buffer.
        """
        limit = (n - off - length) // stride + 1
        if limit < MIN_RUN:
            return 1
        step = stride >> 2
        base = off >> 2
        columns = [(base, length), (base + 1, _RUN_FLAGS), (base + 2, self.seq)]
        if self.layout.attrs:
            found = walk_attrs(buf, off + c.NLMSG_HDRLEN + _align4(self.layout.header), off + length)
            for atype, aoff in self.layout.attrs:
                if atype not in found or aoff + 4 > found[atype][1]:
                    return 1
                hdr = (found[atype][0] - c.NLA_HDRLEN) >> 2
                columns.append((hdr, u32[hdr]))
        window = 4 * MIN_RUN
        while True:
            k = checked = min(window, limit)
            for first, value in columns:
                k = _prefix_equal(u32[first : first + (k - 1) * step + 1 : step], value, k)
                if k < MIN_RUN:
                    return k
            if k < checked or checked == limit:
                return k
            window *= 4

    def _value_offsets(self, buf, off, length):
        """Message-relative offsets of the summed values of the message at off (attributes must be present)."""
        offsets = [c.NLMSG_HDRLEN + f for f in self.layout.fields]
        if self.layout.attrs:
            found = walk_attrs(buf, off + c.NLMSG_HDRLEN + _align4(self.layout.header), off + length)
            offsets.extend(found[atype][0] - off + aoff for atype, aoff in self.layout.attrs)
        return offsets

    def _tally_run(self, buf, u32, off, length, stride, k):
        step = stride >> 2
        key_off, key_width = self.layout.key
        start = off + c.NLMSG_HDRLEN + key_off
        if key_width == 1:
            keys = buf[start : start + (k - 1) * stride + 1 : stride].tobytes()
        else:
            keys = u32[start >> 2 : (start >> 2) + (k - 1) * step + 1 : step]
        counts = Counter(keys)
        for key, count in counts.items():
            self._add(key, 0, count)
        single = next(iter(counts)) if len(counts) == 1 else None
        columns = []
        for i, voff in enumerate(self._value_offsets(buf, off, length), 1):
            first = (off + voff) >> 2
            col = u32[first : first + (k - 1) * step + 1 : step]
            columns.append(col)
            total = sum(col)
            if not total:
                continue
            if single is not None:
                self._add(single, i, total)
            else:
                for key, value in zip(keys, col):
                    if value:
                        self._add(key, i, value)
            if self._width and i <= 2:
                self._run_hist(keys, single, i - 1, col)
        if self._groups:
            self._run_groups(buf, off, stride, k, keys, columns)

    def _run_hist(self, keys, single, index, col) -> None:
        """Histogram the non-zero values of one queue column of a run (zeros are filled in by _finish)."""
        bounds = self.detail.bounds
        if single is None:
            for key, value in zip(keys, col):
                if value:
                    self._add_hist(key, index, bisect_left(bounds, value))
            return
        values = sorted(col.tolist())
        below = bisect_right(values, 0)
        for bucket, bound in enumerate(bounds):
            upto = bisect_right(values, bound)
            if upto > below:
                self._add_hist(single, index, bucket, upto - below)
                below = upto
        if len(values) > below:
            self._add_hist(single, index, len(bounds), len(values) - below)

    def _run_groups(self, buf, off, stride, k, keys, columns) -> None:
        u16 = buf.cast("H")
        half = stride >> 1
        local_groups, remote_groups = self._groups
        first_local, first_remote = ((off + c.NLMSG_HDRLEN + p) >> 1 for p in self.layout.ports)
        local = u16[first_local : first_local + (k - 1) * half + 1 : half]
        remote = u16[first_remote : first_remote + (k - 1) * half + 1 : half]
        for key, lp, rp, rq, wq in zip(keys, local, remote, columns[0], columns[1]):
            mask = local_groups[lp] | remote_groups[rp]
            if mask:
                self._group(mask, key, rq, wq)

    def _tally_one(self, buf, off, end):
        layout = self.layout
        payload = off + c.NLMSG_HDRLEN
        found = None
        if layout.attrs or layout.nest is not None or self._cgroup_attr:
            found = walk_attrs(buf, payload + _align4(layout.header), end)
            if layout.nest is not None:
                inner = found.get(layout.nest)
                found = walk_attrs(buf, inner[0], inner[0] + inner[1]) if inner else {}
        if layout.key_attrs:
            key = 0
            for shift, atype in enumerate(layout.key_attrs):
                key |= (self._attr_u32(buf, found, atype, 0) & 0xFF) << (8 * shift)
        elif layout.key[1] == 1:
            key = buf[payload + layout.key[0]]
        else:
            key = _U32.unpack_from(buf, payload + layout.key[0])[0]
        values = [_U32.unpack_from(buf, payload + foff)[0] for foff in layout.fields]
        values.extend(self._attr_u32(buf, found, atype, aoff) for atype, aoff in layout.attrs)
        row = self.tally.row(key)
        row[0] += 1
        for i, value in enumerate(values, 1):
            row[i] += value
        if self._width:
            for i, value in enumerate(values[:2]):
                if value:
                    self._add_hist(key, i, bisect_left(self.detail.bounds, value))
        if self._groups:
            local_port, remote_port = _PORTS.unpack_from(buf, payload + layout.ports[0])
            mask = self._groups[0][local_port] | self._groups[1][remote_port]
            if mask:
                self._group(mask, key, values[0], values[1])
        if self._cgroup_attr:
            where = found.get(self._cgroup_attr)
            cgroup = _U64.unpack_from(buf, where[0])[0] if where and where[1] >= 8 else 0
            row = self.tally.cgroups.get(cgroup << 8 | key)
            if row is None:
                row = self.tally.cgroups[cgroup << 8 | key] = [0, 0, 0]
            row[0] += 1
            row[1] += values[0]
            row[2] += values[1]

    @staticmethod
    def _attr_u32(buf, found, atype, aoff) -> int:
        """The u32 at aoff in attribute atype; 0 when the attribute or that value is absent (older kernels)."""
        where = found.get(atype)
        if where is None:
            return 0
        start, size = where
        return _U32.unpack_from(buf, start + aoff)[0] if aoff + 4 <= size else 0


class RecordDecoder(DumpDecoder):
    """Keeps one record per message, made by extract(buf, payload offset, end): for the few sockets (listeners)
    that are reported one by one."""

    def __init__(self, layout: Layout, seq: int, what: str, extract):
        super().__init__(layout, seq, what)
        self._fast = False
        self._plain = None
        self.extract = extract
        self.records = []

    def _tally_one(self, buf, off, end):
        self.records.append(self.extract(buf, off + c.NLMSG_HDRLEN, end))

    def _finish(self) -> None:
        pass
