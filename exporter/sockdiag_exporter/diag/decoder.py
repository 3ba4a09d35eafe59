"""Streaming decoder of sock_diag dumps.

Each receive buffer is walked in place with ``struct`` and memoryview slices; every message only bumps a counter
and a few sums in a :class:`Tally` keyed by a small integer (a state byte, or the first word of the message).
No object is created per socket and no buffer outlives its walk.

Fast path: the kernel usually sends long runs of messages of equal length whose headers differ in nothing.
For such a run the key bytes and summed u32 fields are read as strided memoryview slices (C speed);
other messages go through a plain per-message loop.
"""

import struct
from collections import Counter

from . import constants as c
from .errors import DiagMalformed, from_errno

_HDR = struct.Struct("=IHHII")
_U32 = struct.Struct("=I")
_NLA = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")

# Runs shorter than this are cheaper in the plain loop.
MIN_RUN = 8
_RUN_FLAGS = c.SOCK_DIAG_BY_FAMILY | (c.NLM_F_MULTI << 16)


def _align4(n: int) -> int:
    return (n + 3) & ~3


class Layout:
    """Where one kind of sock_diag message keeps the key and the values to tally.

    header: size of the fixed struct after the netlink header; attributes follow it.
    key: (payload offset, width); width 1 reads a byte, width 4 an aligned native u32.
    fields: payload offsets of u32 values summed per key.
    attrs: (attribute type, offset inside its payload) of u32 values summed per key, after the fields;
        a value missing from a message (no such attribute, or a shorter one) counts as 0.
    nest: attribute type whose payload holds the attributes (TIPC), else None.
    key_attrs: attribute types whose u32 values, one byte each, form the key instead of ``key`` (TIPC).
    """

    __slots__ = ("header", "key", "fields", "attrs", "nest", "key_attrs", "fast")

    def __init__(self, header, key=(0, 1), fields=(), attrs=(), nest=None, key_attrs=()):
        for off in tuple(fields) + (key[0] if key[1] == 4 else 0,):
            if off % 4:
                raise ValueError(f"u32 offset {off} is not aligned")
        self.header = header
        self.key = key
        self.fields = tuple(fields)
        self.attrs = tuple(attrs)
        self.nest = nest
        self.key_attrs = tuple(key_attrs)
        self.fast = nest is None and not key_attrs

    @property
    def nvalues(self) -> int:
        return len(self.fields) + len(self.attrs)


class Tally(dict):
    """key -> [socket count, sum of value 0, sum of value 1, ...] for one dump."""

    __slots__ = ("nvalues",)

    def __init__(self, nvalues: int):
        super().__init__()
        self.nvalues = nvalues

    def row(self, key: int) -> list:
        row = self.get(key)
        if row is None:
            row = self[key] = [0] * (self.nvalues + 1)
        return row

    def merge(self, other: "Tally") -> None:
        for key, values in other.items():
            row = self.row(key)
            for i, v in enumerate(values):
                row[i] += v


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
    """Tallies the replies to one dump request, buffer by buffer."""

    def __init__(self, layout: Layout, seq: int, what: str):
        self.layout = layout
        self.seq = seq
        self.what = what
        self.tally = Tally(layout.nvalues)
        self.interrupted = False
        self.messages = 0

    def feed(self, buf: memoryview, u32: memoryview, n: int) -> bool:
        """Walk the first n bytes of buf (u32 is the same buffer cast to "I"); True once the dump is complete."""
        off = 0
        while off < n:
            if n - off < c.NLMSG_HDRLEN:
                raise DiagMalformed(f"{self.what}: truncated netlink header ({n - off} bytes at offset {off})")
            length, mtype, flags, seq, _ = _HDR.unpack_from(buf, off)
            if length < c.NLMSG_HDRLEN or length > n - off:
                raise DiagMalformed(f"{self.what}: netlink message length {length} at offset {off} of {n}")
            stride = _align4(length)
            if seq != self.seq:  # a leftover of an earlier request on this socket
                off += stride
                continue
            if flags & c.NLM_F_DUMP_INTR:
                self.interrupted = True
            if mtype == c.SOCK_DIAG_BY_FAMILY:
                if length - c.NLMSG_HDRLEN < self.layout.header:
                    raise DiagMalformed(
                        f"{self.what}: message of {length} bytes is shorter than its {self.layout.header}-byte header"
                    )
                k = self._run_length(buf, u32, off, length, stride, n) if self.layout.fast else 1
                if k >= MIN_RUN:
                    self._tally_run(buf, u32, off, stride, k)
                    off += k * stride
                else:
                    self._tally_one(buf, off, off + length)
                    off += stride
                continue
            if mtype in (c.NLMSG_DONE, c.NLMSG_ERROR):
                # A dump's error arrives in NLMSG_DONE's payload; a refused request as NLMSG_ERROR.
                err = _ERRNO.unpack_from(buf, off + c.NLMSG_HDRLEN)[0] if length >= c.NLMSG_HDRLEN + 4 else 0
                if err < 0:
                    raise from_errno(-err, self.what)
                if mtype == c.NLMSG_DONE:
                    return True
            off += stride  # NLMSG_NOOP, an ACK, or a type this decoder does not know
        return False

    def _run_length(self, buf, u32, off, length, stride, n) -> int:
        """How many messages from off share length, type, flags and seq (and the wanted attributes' places)."""
        limit = (n - off - length) // stride + 1
        if limit < MIN_RUN:
            return 1
        step = stride >> 2
        base = off >> 2
        k = limit
        for word, value in ((0, length), (1, _RUN_FLAGS), (2, self.seq)):
            k = _prefix_equal(u32[base + word : base + word + (k - 1) * step + 1 : step], value, k)
            if k < MIN_RUN:
                return k
        if self.layout.attrs:
            payload = off + c.NLMSG_HDRLEN
            found = walk_attrs(buf, payload + _align4(self.layout.header), off + length)
            for atype, aoff in self.layout.attrs:
                if atype not in found or aoff + 4 > found[atype][1]:
                    return 1
                hdr = (found[atype][0] - c.NLA_HDRLEN) >> 2
                k = _prefix_equal(u32[hdr : hdr + (k - 1) * step + 1 : step], u32[hdr], k)
                if k < MIN_RUN:
                    return k
        return k

    def _value_offsets(self, buf, off, length):
        """Message-relative offsets of the summed values of the message at off (attributes must be present)."""
        offsets = [c.NLMSG_HDRLEN + f for f in self.layout.fields]
        if self.layout.attrs:
            found = walk_attrs(buf, off + c.NLMSG_HDRLEN + _align4(self.layout.header), off + length)
            offsets.extend(found[atype][0] - off + aoff for atype, aoff in self.layout.attrs)
        return offsets

    def _tally_run(self, buf, u32, off, stride, k):
        step = stride >> 2
        key_off, key_width = self.layout.key
        start = off + c.NLMSG_HDRLEN + key_off
        if key_width == 1:
            keys = buf[start : start + (k - 1) * stride + 1 : stride].tobytes()
        else:
            keys = u32[start >> 2 : (start >> 2) + (k - 1) * step + 1 : step]
        counts = Counter(keys)
        tally = self.tally
        for key, count in counts.items():
            tally.row(key)[0] += count
        self.messages += k
        length = _U32.unpack_from(buf, off)[0]
        for i, voff in enumerate(self._value_offsets(buf, off, length), 1):
            first = (off + voff) >> 2
            col = u32[first : first + (k - 1) * step + 1 : step]
            total = sum(col)
            if not total:
                continue
            if len(counts) == 1:
                tally[next(iter(counts))][i] += total
            else:
                for key, value in zip(keys, col):
                    if value:
                        tally[key][i] += value

    def _tally_one(self, buf, off, end):
        layout = self.layout
        payload = off + c.NLMSG_HDRLEN
        found = None
        if layout.attrs or layout.nest is not None:
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
        row = self.tally.row(key)
        row[0] += 1
        i = 1
        for foff in layout.fields:
            row[i] += _U32.unpack_from(buf, payload + foff)[0]
            i += 1
        for atype, aoff in layout.attrs:
            row[i] += self._attr_u32(buf, found, atype, aoff)
            i += 1
        self.messages += 1

    @staticmethod
    def _attr_u32(buf, found, atype, aoff) -> int:
        """The u32 at aoff in attribute atype; 0 when the attribute or that value is absent (older kernels)."""
        where = found.get(atype)
        if where is None:
            return 0
        start, size = where
        return _U32.unpack_from(buf, start + aoff)[0] if aoff + 4 <= size else 0
