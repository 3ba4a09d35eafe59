"""Streaming decoders of sock_diag dumps: each receive buffer is walked in place, nothing is kept per socket.

Every decoder shares the netlink framing (:class:`Decoder`: lengths checked, stale sequence numbers skipped,
``NLM_F_DUMP_INTR`` noted, the dump's end or error found). What a reply message becomes takes one of three paths:

- the **run path** (runs.py): a run of identical-looking messages is tallied column by column;
- the **struct path** (:class:`StructDecoder`): inet replies without attributes, one struct call per message
  reading header, key, ports and both queues at once, summed into flat lists indexed by the state byte;
- the **attribute path** (:class:`AttributeDecoder`): anything else, attributes walked message by message.

:class:`RecordDecoder` keeps one record per message instead, for the few sockets reported one by one (listeners).
"""

import struct
from bisect import bisect_left

from . import constants as c
from .attrs import align4, attr_u32, walk_attrs
from .errors import DiagMalformed, from_errno
from .layout import Layout
from .runs import MIN_RUN, RUN_FLAGS, Runs
from .tally import NO_DETAIL, Detail, Tally

_HEAD = struct.Struct("=III")  # nlmsg_len, nlmsg_type | nlmsg_flags << 16, nlmsg_seq (native order)
_HDR = struct.Struct("=IHHII")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_PORTS = struct.Struct("=HH")  # idiag_sport, idiag_dport: network order, read natively (see tally.port_tables)
_ERRNO = struct.Struct("=i")


class Decoder:
    """The netlink framing of one dump's replies; subclasses say what a reply message becomes (_message).

    feed() walks one receive buffer and returns True once the dump is complete (NLMSG_DONE of this request).
    """

    runs = None  # a Runs when the run path is on

    def __init__(self, layout: Layout, seq: int, what: str):
        self.layout = layout
        self.seq = seq
        self.what = what
        self.interrupted = False

    def feed(self, buf: memoryview, u32: memoryview, n: int) -> bool:
        """Walk the first n bytes of buf (u32 is the same buffer cast to "I"); True once the dump is complete."""
        seq, runs = self.seq, self.runs
        min_length = c.NLMSG_HDRLEN + self.layout.header
        head = _HEAD.unpack_from
        message = self._message
        min_run = runs.min_run if runs else 0
        retry_at, backoff = 0, min_run
        off = 0
        while off < n:  # off stays 4-aligned: every stride is
            if n - off < c.NLMSG_HDRLEN:
                raise self._truncated(off, n)
            length, typeflags, msg_seq = head(buf, off)
            if length < c.NLMSG_HDRLEN or length > n - off:
                raise self._bad_length(length, off, n)
            stride = (length + 3) & ~3
            if typeflags != RUN_FLAGS or msg_seq != seq:
                if self._control(buf, off, length):
                    self._finish()
                    return True
                off += stride
                continue
            if length < min_length:
                raise self._too_short(length)
            if runs is not None and off >= retry_at:
                # The length guess: in a run, the message min_run - 1 strides ahead starts with the same length.
                # One index read rules most non-runs out before the real check (Runs.attempt).
                ahead = off + stride * (min_run - 1)
                if ahead < n and u32[ahead >> 2] == length:
                    taken, retry_at, backoff = runs.attempt(buf, u32, off, length, stride, n, backoff)
                    if taken:
                        off += taken
                        continue
            message(buf, off, off + length)
            off += stride
        return False

    def _control(self, buf, off: int, length: int) -> bool:
        """A message that is not a plain reply of this dump; True at the end of the dump."""
        _, mtype, flags, seq, _ = _HDR.unpack_from(buf, off)
        if seq != self.seq:  # a leftover of an earlier request on this socket
            return False
        if flags & c.NLM_F_DUMP_INTR:
            self.interrupted = True
        if mtype == c.SOCK_DIAG_BY_FAMILY:  # a reply with unusual flags (DUMP_INTR): still a socket
            if length - c.NLMSG_HDRLEN < self.layout.header:
                raise self._too_short(length)
            self._message(buf, off, off + length)
            return False
        if mtype in (c.NLMSG_DONE, c.NLMSG_ERROR):
            # A dump's error arrives in NLMSG_DONE's payload; a refused request as NLMSG_ERROR; errno 0 is an ACK.
            err = _ERRNO.unpack_from(buf, off + c.NLMSG_HDRLEN)[0] if length >= c.NLMSG_HDRLEN + 4 else 0
            if err < 0:
                raise from_errno(-err, self.what)
            return mtype == c.NLMSG_DONE
        return False  # NLMSG_NOOP, or a type this decoder does not know

    def _truncated(self, off: int, n: int) -> DiagMalformed:
        return DiagMalformed(f"{self.what}: truncated netlink header ({n - off} bytes at offset {off})")

    def _bad_length(self, length: int, off: int, n: int) -> DiagMalformed:
        return DiagMalformed(f"{self.what}: netlink message length {length} at offset {off} of {n}")

    def _too_short(self, length: int) -> DiagMalformed:
        return DiagMalformed(
            f"{self.what}: message of {length} bytes is shorter than its {self.layout.header}-byte header")

    def _message(self, buf, off: int, end: int) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        pass


class AttributeDecoder(Decoder):
    """The attribute path: every message's attributes walked and its values summed into a Tally by key."""

    def __init__(self, layout: Layout, seq: int, what: str, detail: Detail = NO_DETAIL, min_run: int = MIN_RUN):
        super().__init__(layout, seq, what)
        self.detail = detail
        self.tally = Tally(layout, detail.bounds)
        self.cgroup_attr = detail.cgroup_attr if layout.ports else 0  # inet only
        self.groups = detail.port_groups if layout.ports else None
        # Runs need every message's values at fixed places: not with a cgroup id to read per message.
        if min_run and layout.flat and not self.cgroup_attr:
            self.runs = Runs(layout, seq, detail, self.tally, min_run)

    def _message(self, buf, off, end):
        layout, tally = self.layout, self.tally
        payload = off + c.NLMSG_HDRLEN
        found = None
        if layout.attrs or layout.nest is not None or self.cgroup_attr:
            found = walk_attrs(buf, payload + align4(layout.header), end)
            if layout.nest is not None:
                inner = found.get(layout.nest)
                found = walk_attrs(buf, inner[0], inner[0] + inner[1]) if inner else {}
        if layout.key_attrs:
            key = 0
            for shift, atype in enumerate(layout.key_attrs):
                key |= (attr_u32(buf, found, atype, 0) & 0xFF) << (8 * shift)
        elif layout.key[1] == 1:
            key = buf[payload + layout.key[0]]
        else:
            key = _U32.unpack_from(buf, payload + layout.key[0])[0]
        values = [_U32.unpack_from(buf, payload + foff)[0] for foff in layout.fields]
        values.extend(attr_u32(buf, found, atype, aoff) for atype, aoff in layout.attrs)
        row = tally.row(key)
        row[0] += 1
        for i, value in enumerate(values, 1):
            row[i] += value
        if tally.bounds:
            for i, value in enumerate(values[:2]):
                if value:  # zeros: fill_zero_buckets
                    tally.add_hist(key, i, bisect_left(tally.bounds, value))
        if self.groups:
            local_port, remote_port = _PORTS.unpack_from(buf, payload + layout.ports[0])
            mask = self.groups[0][local_port] | self.groups[1][remote_port]
            if mask:
                tally.add_group(mask, key, values[0], values[1])
        if self.cgroup_attr:
            where = found.get(self.cgroup_attr)
            tally.add_cgroup(_U64.unpack_from(buf, where[0])[0] if where and where[1] >= 8 else 0, key,
                             values[0], values[1])

    def _finish(self):
        self.tally.fill_zero_buckets()


class _Slots:
    """The struct path's sums: flat lists indexed by the key byte (and key * width + bucket for histograms),
    cheaper per message than dict rows; moved into the Tally at the end. Also the run path's sink there."""

    __slots__ = ("columns", "hist", "width", "tally")

    def __init__(self, tally: Tally):
        self.tally = tally
        self.width = len(tally.bounds) + 1 if tally.bounds else 0
        self.columns = [[0] * 256 for _ in range(3)]  # count, receive queue, send queue
        self.hist = [[0] * (256 * self.width) for _ in range(2)]

    def add(self, key: int, index: int, value: int) -> None:
        self.columns[index][key] += value

    def add_hist(self, key: int, index: int, bucket: int, count: int = 1) -> None:
        self.hist[index][key * self.width + bucket] += count

    def add_group(self, mask: int, key: int, rq: int, wq: int) -> None:
        self.tally.add_group(mask, key, rq, wq)

    def flush(self) -> None:
        tally, width = self.tally, self.width
        counts, sums = self.columns[0], self.columns[1:]
        for key, count in enumerate(counts):
            if not count:
                continue
            row = tally.row(key)
            row[0] += count
            for i, column in enumerate(sums, 1):
                row[i] += column[key]
            if width:
                for index, flat in enumerate(self.hist):
                    buckets = tally.buckets(key)[index]
                    for bucket, n in enumerate(flat[key * width : (key + 1) * width]):
                        buckets[bucket] += n


def _offsets_struct(items, head: bool = False) -> struct.Struct:
    """A Struct reading (payload offset, struct code) items of a message, offsets counted from the start of its
    payload; with head, nlmsg_len, type | flags << 16 and seq come first (one call reads everything)."""
    fmt, at = ("=III4x", 0) if head else ("=", -c.NLMSG_HDRLEN)
    for offset, code in sorted(items):
        fmt += f"{offset - at}x{code}" if offset > at else code
        at = offset + struct.calcsize("=" + code)
    return struct.Struct(fmt)


class StructDecoder(Decoder):
    """The struct path, for inet replies without attributes: one struct call reads a message's header, state byte,
    ports and both queues. Its own loop (the framing of Decoder.feed inlined) because this is the hottest code of
    the exporter: about 500 ns a message, a method call per message would add a fifth."""

    def __init__(self, layout: Layout, seq: int, what: str, detail: Detail = NO_DETAIL, min_run: int = MIN_RUN):
        super().__init__(layout, seq, what)
        if not self.fits(layout, detail):
            raise ValueError("StructDecoder needs an inet layout without attributes and no cgroup attribution")
        self.detail = detail
        self.tally = Tally(layout, detail.bounds)
        self.slots = _Slots(self.tally)
        local, remote = layout.ports
        items = [(layout.key[0], "B"), (local, "H"), (remote, "H")] + [(f, "I") for f in layout.fields]
        self._fields = _offsets_struct(items)
        self._head_and_fields = _offsets_struct(items, head=True)
        if min_run:
            self.runs = Runs(layout, seq, detail, self.slots, min_run)

    @staticmethod
    def fits(layout: Layout, detail: Detail) -> bool:
        return (layout.flat and layout.key[1] == 1 and not layout.attrs and len(layout.fields) == 2
                and layout.ports is not None and not detail.cgroup_attr)

    def feed(self, buf: memoryview, u32: memoryview, n: int) -> bool:
        seq, runs = self.seq, self.runs
        min_length = c.NLMSG_HDRLEN + self.layout.header
        unpack_all, unpack_fields = self._head_and_fields.unpack_from, self._fields.unpack_from
        whole = len(buf) - self._head_and_fields.size  # past this offset a message is read in two calls
        head = _HEAD.unpack_from
        counts, rq_sums, wq_sums = self.slots.columns
        rq_hist, wq_hist = self.slots.hist
        bounds, width = self.detail.bounds, self.slots.width
        groups = self.detail.port_groups
        if groups:
            local_groups, remote_groups = groups
        min_run = runs.min_run if runs else 0
        retry_at, backoff = 0, min_run
        off = 0
        while off < n:
            if n - off < c.NLMSG_HDRLEN:
                raise self._truncated(off, n)
            if off <= whole:
                length, typeflags, msg_seq, key, local_port, remote_port, rq, wq = unpack_all(buf, off)
            else:
                length, typeflags, msg_seq = head(buf, off)
                key = None
            if length < c.NLMSG_HDRLEN or length > n - off:
                raise self._bad_length(length, off, n)
            stride = (length + 3) & ~3
            if typeflags != RUN_FLAGS or msg_seq != seq:
                if self._control(buf, off, length):
                    self._finish()
                    return True
                off += stride
                continue
            if length < min_length:
                raise self._too_short(length)
            if runs is not None and off >= retry_at:
                ahead = off + stride * (min_run - 1)  # the length guess, as in Decoder.feed
                if ahead < n and u32[ahead >> 2] == length:
                    taken, retry_at, backoff = runs.attempt(buf, u32, off, length, stride, n, backoff)
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
                    self.tally.add_group(mask, key, rq, wq)
            off += stride
        return False

    def _message(self, buf, off, end):  # a reply _control passed on (unusual flags)
        key, local_port, remote_port, rq, wq = self._fields.unpack_from(buf, off)
        slots = self.slots
        slots.add(key, 0, 1)
        for index, value in enumerate((rq, wq)):
            if value:
                slots.add(key, index + 1, value)
                if slots.width:
                    slots.add_hist(key, index, bisect_left(self.detail.bounds, value))
        groups = self.detail.port_groups
        if groups:
            mask = groups[0][local_port] | groups[1][remote_port]
            if mask:
                self.tally.add_group(mask, key, rq, wq)

    def _finish(self):
        self.slots.flush()
        self.tally.fill_zero_buckets()


def counting_decoder(layout: Layout, seq: int, what: str, detail: Detail = NO_DETAIL, min_run: int = MIN_RUN):
    """The decoder that tallies this layout fastest: the struct path where it fits, else the attribute path.
    min_run=0 switches the run path off."""
    cls = StructDecoder if StructDecoder.fits(layout, detail) else AttributeDecoder
    return cls(layout, seq, what, detail, min_run)


class RecordDecoder(Decoder):
    """One record per message, made by extract(buf, payload offset, end): for the few sockets (listeners) that
    are reported one by one."""

    def __init__(self, layout: Layout, seq: int, what: str, extract):
        super().__init__(layout, seq, what)
        self.extract = extract
        self.records = []

    def _message(self, buf, off, end):
        self.records.append(self.extract(buf, off + c.NLMSG_HDRLEN, end))
