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
from itertools import compress

from . import constants as c
from .attrs import align4, attr_u32, walk_attrs
from .errors import DiagMalformed, from_errno
from .layout import REMOTE_KEY, Layout, offsets_struct
from .runs import MIN_RUN, RUN_FLAGS, Runs
from .tally import MINISOCKET_STATES, NO_DETAIL, TIMEWAIT_TIMER, Detail, Tally

_HEAD = struct.Struct("=III")  # nlmsg_len, nlmsg_type | nlmsg_flags << 16, nlmsg_seq (native order)
_HDR = struct.Struct("=IHHII")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_PORTS = struct.Struct("=HH")  # idiag_sport, idiag_dport: network order, read natively (see tally.port_tables)
_ERRNO = struct.Struct("=i")
NO_PORTS = bytes(65536)  # a port table with no port in it


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
        self.ephemeral = detail.ephemeral if layout.addresses is not None else None
        self.local_state = detail.local_state if layout.addresses is not None else -1
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
        if layout.timer is not None and buf[payload + layout.timer] == TIMEWAIT_TIMER and key in MINISOCKET_STATES:
            tally.add_minisockets(key)
        if self.ephemeral is not None and self.ephemeral[_PORTS.unpack_from(buf, payload + layout.ports[0])[0]]:
            tally.add_remotes(layout.remote.unpack_from(buf, off))
        if key == self.local_state:
            endpoint = layout.local.unpack_from(buf, off)
            if self.detail.local_ports is None or self.detail.local_ports[endpoint[0]]:
                tally.add_local(endpoint, values)

    def _finish(self):
        self.tally.fill_zero_buckets()


TIMERS = 5  # idiag_timer values the struct path has slots for: 0-4, the ones tcp, mptcp, dccp, udp and raw use


class _Slots:
    """The struct path's sums: flat lists indexed by the state byte and idiag_timer read as one u16 (state | timer
    << 8), and by state * width + bucket for histograms, cheaper per message than dict rows; moved into the Tally at
    the end, the sockets on the TIME_WAIT timer counted apart. Also the run path's sink there (by state alone)."""

    __slots__ = ("columns", "hist", "width", "tally")

    def __init__(self, tally: Tally):
        self.tally = tally
        self.width = len(tally.bounds) + 1 if tally.bounds else 0
        self.columns = [[0] * (256 * TIMERS) for _ in range(3)]  # count, receive queue, send queue
        self.hist = [[0] * (256 * self.width) for _ in range(2)]

    def add(self, key: int, index: int, value: int) -> None:
        self.columns[index][key] += value

    def add_hist(self, key: int, index: int, bucket: int, count: int = 1) -> None:
        self.hist[index][key * self.width + bucket] += count

    def add_group(self, mask: int, key: int, rq: int, wq: int) -> None:
        self.tally.add_group(mask, key & 0xFF, rq, wq)

    def add_minisockets(self, key: int, count: int) -> None:
        self.tally.add_minisockets(key, count)

    def add_remotes(self, remotes) -> None:
        self.tally.add_remotes(remotes)

    def state_count(self, state: int) -> int:
        """Sockets of this state so far, whatever their timer."""
        return sum(self.columns[0][state::256])

    def flush(self) -> None:
        tally, width = self.tally, self.width
        counts, sums = self.columns[0], self.columns[1:]
        states = set()
        for slot in compress(range(len(counts)), counts):
            key, timer = slot & 0xFF, slot >> 8
            states.add(key)
            row = tally.row(key)
            row[0] += counts[slot]
            for i, column in enumerate(sums, 1):
                row[i] += column[slot]
            if timer == TIMEWAIT_TIMER and key in MINISOCKET_STATES:
                tally.add_minisockets(key, counts[slot])
        for key in states if width else ():
            for index, flat in enumerate(self.hist):
                buckets = tally.buckets(key)[index]
                for bucket, n in enumerate(flat[key * width : (key + 1) * width]):
                    buckets[bucket] += n


_STRUCTS = {}  # (layout, remote endpoints counted) -> the StructDecoder's two Structs


def _structs(layout: Layout, remotes: bool):
    """The Structs reading a message's fields, and its header and fields: state and timer as one u16, the local
    port, the remote port (or, when remote endpoints are counted, the remote endpoint key from it: bytes), both
    queues."""
    if (layout, remotes) not in _STRUCTS:
        local, remote = layout.ports
        items = [(layout.key[0], "H"), (local, "H"), (remote, f"{REMOTE_KEY}s" if remotes else "H")]
        items += [(f, "I") for f in layout.fields]
        _STRUCTS[layout, remotes] = offsets_struct(items), offsets_struct(items, head=True)
    return _STRUCTS[layout, remotes]


class StructDecoder(Decoder):
    """The struct path, for inet replies without attributes: one struct call reads a message's header, state and
    timer, ports (the remote one as part of the remote endpoint key when remote endpoints are counted) and both
    queues. Its own loop (the framing of
    Decoder.feed inlined) because this is the hottest code of the exporter: about 300 ns a message, a method call
    per message would add a fifth. Per message it only adds; local endpoints (of a rare state: half-open
    connections) are read in a second walk of just the buffers that had such sockets: no cost when there are none.
    """

    def __init__(self, layout: Layout, seq: int, what: str, detail: Detail = NO_DETAIL, min_run: int = MIN_RUN):
        super().__init__(layout, seq, what)
        if not self.fits(layout, detail):
            raise ValueError("StructDecoder needs an inet layout without attributes and no cgroup attribution")
        self.detail = detail
        self.tally = Tally(layout, detail.bounds)
        self.slots = _Slots(self.tally)
        self._fields, self._head_and_fields = _structs(layout, detail.ephemeral is not None)
        self._plain = struct.unpack("=Q", struct.pack("=HHI", c.SOCK_DIAG_BY_FAMILY, c.NLM_F_MULTI, seq))[0]
        if min_run:
            # No local endpoints in runs: the second walk reads every such socket of a buffer.
            self.runs = Runs(layout, seq, detail._replace(local_state=-1), self.slots, min_run)

    @staticmethod
    def fits(layout: Layout, detail: Detail) -> bool:
        return (layout.flat and layout.key[1] == 1 and not layout.attrs and len(layout.fields) == 2
                and layout.ports is not None and layout.addresses is not None
                and layout.timer == layout.key[0] + 1 and not detail.cgroup_attr)

    def feed(self, buf: memoryview, u32: memoryview, n: int) -> bool:
        try:
            return self._feed(buf, u32, n)
        except IndexError:  # a slot past TIMERS: an idiag_timer this decoder does not know
            raise DiagMalformed(f"{self.what}: idiag_timer out of range 0-{TIMERS - 1}") from None

    def _feed(self, buf: memoryview, u32: memoryview, n: int) -> bool:
        runs, plain = self.runs, self._plain
        hdrlen = c.NLMSG_HDRLEN
        min_length = hdrlen + self.layout.header
        unpack_all = self._head_and_fields.unpack_from
        # Messages starting up to last are read in one call: the header is within n, the fields within the buffer.
        last = min(n - hdrlen, len(buf) - self._head_and_fields.size)
        slots = self.slots
        counts, rq_sums, wq_sums = slots.columns
        rq_hist, wq_hist = slots.hist
        bounds, width = self.detail.bounds, slots.width
        groups = self.detail.port_groups
        if groups:
            local_groups, remote_groups = groups
        counted = self.detail.ephemeral is not None  # remote is then the remote endpoint key, else the remote port
        ephemeral = self.detail.ephemeral if counted else NO_PORTS
        ports_at = hdrlen + self.layout.ports[0]  # to read the remote port apart when remote is the key
        remotes = self.tally.remotes
        remotes_get = remotes.get
        local_state = self.detail.local_state
        locals_before = slots.state_count(local_state) if local_state >= 0 else 0
        min_run = runs.min_run if runs else 0
        retry_at, backoff = (0, min_run) if runs else (n, 0)
        off, done = 0, False
        while off <= last:
            length, tag, key, local_port, remote, rq, wq = unpack_all(buf, off)
            if tag != plain:
                if length < hdrlen or length > n - off:
                    raise self._bad_length(length, off, n)
                done = self._control(buf, off, length)
                off += (length + 3) & ~3
                if done:
                    break
                continue
            if length < min_length:  # a length past n shows after the loop: off > n
                raise self._bad_length(length, off, n) if length < hdrlen else self._too_short(length)
            stride = (length + 3) & ~3
            if off >= retry_at:
                # The length guess: in a run, the message min_run - 1 strides ahead starts with the same length.
                # One index read rules most non-runs out before the real check (Runs.attempt).
                ahead = off + stride * (min_run - 1)
                if ahead < n and u32[ahead >> 2] == length:
                    taken, retry_at, backoff = runs.attempt(buf, u32, off, length, stride, n, backoff)
                    if taken:
                        off += taken
                        continue
            counts[key] += 1
            if rq:
                rq_sums[key] += rq
                if width:
                    rq_hist[(key & 0xFF) * width + bisect_left(bounds, rq)] += 1
            if wq:
                wq_sums[key] += wq
                if width:
                    wq_hist[(key & 0xFF) * width + bisect_left(bounds, wq)] += 1
            if groups:
                mask = local_groups[local_port] | remote_groups[_PORTS.unpack_from(buf, off + ports_at)[1]
                                                                if counted else remote]
                if mask:
                    self.tally.add_group(mask, key & 0xFF, rq, wq)
            if ephemeral[local_port]:
                remotes[remote] = remotes_get(remote, 0) + 1
            off += stride
        if off > n:
            self._overrun(buf, n)
        while not done and off < n:  # the last messages of a full buffer: one at a time
            done, off = self._tail(buf, off, n)
        if local_state >= 0 and slots.state_count(local_state) != locals_before:
            self._add_locals(buf, off)
        if done:
            self._finish()
        return done

    def _overrun(self, buf, n: int) -> None:
        """Raise the error of the first message that runs past n (the loop checks lengths against n only once)."""
        off = 0
        while True:
            length = _HEAD.unpack_from(buf, off)[0]
            if length > n - off:
                raise self._bad_length(length, off, n)
            off += (length + 3) & ~3

    def _tail(self, buf, off: int, n: int):
        """The message at off, read in parts: (dump complete, next offset)."""
        if n - off < c.NLMSG_HDRLEN:
            raise self._truncated(off, n)
        length, typeflags, msg_seq = _HEAD.unpack_from(buf, off)
        if length < c.NLMSG_HDRLEN or length > n - off:
            raise self._bad_length(length, off, n)
        stride = (length + 3) & ~3
        if typeflags == RUN_FLAGS and msg_seq == self.seq:
            if length < c.NLMSG_HDRLEN + self.layout.header:
                raise self._too_short(length)
            self._message(buf, off, off + length)
        elif self._control(buf, off, length):
            return True, off + stride
        return False, off + stride

    def _add_locals(self, buf, end: int) -> None:
        """The second walk: every socket in the local state among this dump's replies in buf[:end]."""
        state_at = c.NLMSG_HDRLEN + self.layout.key[0]
        local, fields = self.layout.local.unpack_from, self._fields.unpack_from
        state, ports, tally = self.detail.local_state, self.detail.local_ports, self.tally
        off = 0
        while off < end:
            length, typeflags, msg_seq = _HEAD.unpack_from(buf, off)
            if typeflags & 0xFFFF == c.SOCK_DIAG_BY_FAMILY and msg_seq == self.seq and buf[off + state_at] == state:
                endpoint = local(buf, off)
                if ports is None or ports[endpoint[0]]:
                    tally.add_local(endpoint, fields(buf, off)[-2:])
            off += (length + 3) & ~3

    def _message(self, buf, off, end):  # a reply read in parts: at a buffer's end, or with unusual flags
        key, local_port, remote, rq, wq = self._fields.unpack_from(buf, off)
        remote_port = _PORTS.unpack_from(buf, off + c.NLMSG_HDRLEN + self.layout.ports[0])[1]
        slots = self.slots
        slots.add(key, 0, 1)
        for index, value in enumerate((rq, wq)):
            if value:
                slots.add(key, index + 1, value)
                if slots.width:
                    slots.add_hist(key & 0xFF, index, bisect_left(self.detail.bounds, value))
        groups = self.detail.port_groups
        if groups:
            mask = groups[0][local_port] | groups[1][remote_port]
            if mask:
                self.tally.add_group(mask, key & 0xFF, rq, wq)
        if self.detail.ephemeral is not None and self.detail.ephemeral[local_port]:
            self.tally.add_remotes((remote,))

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
