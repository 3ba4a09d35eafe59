"""Runs: stretches of a receive buffer where the kernel sent many messages that differ only in their values.

A dump usually comes as long runs of messages of equal length whose headers (type, flags, sequence number) and
attribute places are identical: every established TCP socket, say. In a run, message i's key and values sit at
the same offsets plus i * stride, so a strided memoryview slice reads one field of every message at C speed, and
a Counter or sum() tallies the column. Measured: about 130 ns a message against about 500 ns for one struct call
per message (README, Performance).

Messages of other shapes (TIME_WAIT sockets carry no attributes, so they are shorter) break runs; the caller
guesses cheaply where a run may start and backs off after failed attempts (see :meth:`Runs.attempt`).
"""

import struct
from bisect import bisect_left, bisect_right
from collections import Counter
from itertools import compress, repeat
from operator import and_, itemgetter

from . import constants as c
from .attrs import align4, walk_attrs
from .layout import Layout
from .tally import MINISOCKET_STATES, TIMEWAIT_TIMER, Detail

_U32 = struct.Struct("=I")
RUN_FLAGS = c.SOCK_DIAG_BY_FAMILY | (c.NLM_F_MULTI << 16)  # nlmsg_type | nlmsg_flags << 16 of a plain reply
MIN_RUN = 32  # measured: shorter runs are cheaper in the per-message loops
MAX_BACKOFF = 4096  # messages skipped after repeated failed attempts


def _prefix_equal(col: memoryview, value: int, k: int) -> int:
    """How many leading u32 elements of col (k of them) equal value: one bytes comparison, then a binary search
    for the first difference only when there is one."""
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


class Runs:
    """Finds runs in one dump's buffers and tallies them into sink (add, add_hist, add_group, add_minisockets,
    add_remotes, add_local)."""

    def __init__(self, layout: Layout, seq: int, detail: Detail, sink, min_run: int = MIN_RUN):
        self.layout = layout
        self.seq = seq
        self.bounds = detail.bounds
        self.groups = detail.port_groups if layout.ports else None
        inet = layout.addresses is not None
        self.timer = layout.timer is not None
        self.ephemeral = detail.ephemeral if inet else None
        self.local_state = detail.local_state if inet else -1
        self.local_ports = detail.local_ports
        self.sink = sink
        self.min_run = min_run

    def attempt(self, buf, u32, off: int, length: int, stride: int, n: int, backoff: int):
        """Tally the run starting at off if there is one: (bytes taken, offset of the next attempt, next backoff).

        A failed attempt backs off (twice as far each time, up to MAX_BACKOFF messages) so that buffers of mixed
        shapes pay for few attempts; a success resets the backoff.
        """
        k = self._length(buf, u32, off, length, stride, n)
        if k >= self.min_run:
            self._tally(buf, u32, off, length, stride, k)
            return k * stride, 0, self.min_run
        return 0, off + backoff * stride, min(backoff * 2, MAX_BACKOFF)

    def _length(self, buf, u32, off, length, stride, n) -> int:
        """How many messages from off share length, type, flags and seq (and the summed attributes' places).

        Checked in windows growing fourfold, so that a short run costs little however large the buffer.
        """
        min_run = self.min_run
        limit = (n - off - length) // stride + 1
        if limit < min_run:
            return 1
        step = stride >> 2
        base = off >> 2
        columns = [(base, length), (base + 1, RUN_FLAGS), (base + 2, self.seq)]
        if self.layout.attrs:
            found = walk_attrs(buf, off + c.NLMSG_HDRLEN + align4(self.layout.header), off + length)
            for atype, aoff in self.layout.attrs:
                if atype not in found or aoff + 4 > found[atype][1]:
                    return 1
                hdr = (found[atype][0] - c.NLA_HDRLEN) >> 2  # the attribute's header word: length and type
                columns.append((hdr, u32[hdr]))
        window = 4 * min_run
        while True:
            k = checked = min(window, limit)
            for first, value in columns:
                k = _prefix_equal(u32[first : first + (k - 1) * step + 1 : step], value, k)
                if k < min_run:
                    return k
            if k < checked or checked == limit:
                return k
            window *= 4

    def _value_offsets(self, buf, off, length):
        """Message-relative offsets of the summed values of the message at off (its attributes are present)."""
        layout = self.layout
        offsets = [c.NLMSG_HDRLEN + f for f in layout.fields]
        if layout.attrs:
            found = walk_attrs(buf, off + c.NLMSG_HDRLEN + align4(layout.header), off + length)
            offsets.extend(found[atype][0] - off + aoff for atype, aoff in layout.attrs)
        return offsets

    def _tally(self, buf, u32, off, length, stride, k) -> None:
        sink = self.sink
        step = stride >> 2
        key_off, key_width = self.layout.key
        start = off + c.NLMSG_HDRLEN + key_off
        if key_width == 1:
            keys = buf[start : start + (k - 1) * stride + 1 : stride].tobytes()
        else:
            keys = u32[start >> 2 : (start >> 2) + (k - 1) * step + 1 : step]
        counts = Counter(keys)
        for key, count in counts.items():
            sink.add(key, 0, count)
        single = next(iter(counts)) if len(counts) == 1 else None  # all one key: sums need no per-key split
        columns = []
        for i, voff in enumerate(self._value_offsets(buf, off, length), 1):
            first = (off + voff) >> 2
            col = u32[first : first + (k - 1) * step + 1 : step]
            columns.append(col)
            total = sum(col)
            if not total:
                continue
            if single is not None:
                sink.add(single, i, total)
            else:  # the non-zero values alone reach Python (most queues are empty)
                for key, value in compress(zip(keys, col), col):
                    sink.add(key, i, value)
            if self.bounds and i <= 2:
                self._hist(keys, single, i - 1, col)
        if self.groups:
            self._groups(buf, off, stride, k, keys, columns)
        if self.timer and (MINISOCKET_STATES[0] in counts or MINISOCKET_STATES[1] in counts):
            self._minisockets(buf, off, stride, k, keys)
        if self.ephemeral is not None:
            self._remotes(buf, off, stride, k)
        if self.local_state in counts:
            self._locals(buf, off, stride, k, keys, columns)

    def _hist(self, keys, single, index, col) -> None:
        """Bucket the non-zero values of one queue column (zeros go to bucket 0 at the end: fill_zero_buckets)."""
        bounds, sink = self.bounds, self.sink
        if single is None:
            for key, value in compress(zip(keys, col), col):
                sink.add_hist(key, index, bisect_left(bounds, value))
            return
        values = sorted(col.tolist())  # one key: count per bucket by bisecting the sorted column
        below = bisect_right(values, 0)
        for bucket, bound in enumerate(bounds):
            upto = bisect_right(values, bound)
            if upto > below:
                sink.add_hist(single, index, bucket, upto - below)
                below = upto
        if len(values) > below:
            sink.add_hist(single, index, len(bounds), len(values) - below)

    def _column16(self, buf, off, stride, k, offset):
        """The u16 at payload offset of each of the k messages from off (a port: read natively)."""
        half = stride >> 1
        first = (off + c.NLMSG_HDRLEN + offset) >> 1
        return buf.cast("H")[first : first + (k - 1) * half + 1 : half]

    def _minisockets(self, buf, off, stride, k, keys) -> None:
        """Count the messages on the TIME_WAIT timer per key (a minisocket reports FIN_WAIT2 or TIME_WAIT)."""
        first = off + c.NLMSG_HDRLEN + self.layout.timer
        timers = buf[first : first + (k - 1) * stride + 1 : stride].tobytes()
        if TIMEWAIT_TIMER in timers:
            waiting = Counter(compress(keys, map(TIMEWAIT_TIMER.__eq__, timers)))
            for key in MINISOCKET_STATES:
                if waiting[key]:
                    self.sink.add_minisockets(key, waiting[key])

    def _remotes(self, buf, off, stride, k) -> None:
        """The remote endpoints of the messages whose local port is ephemeral."""
        chosen = list(map(self.ephemeral.__getitem__, self._column16(buf, off, stride, k, self.layout.ports[0])))
        if any(chosen):
            starts = compress(range(off, off + k * stride, stride), chosen)
            self.sink.add_remotes(map(itemgetter(0), map(self.layout.remote.unpack_from, repeat(buf), starts)))

    def _locals(self, buf, off, stride, k, keys, columns) -> None:
        """The local endpoints and values of the messages in the local state (on a chosen port)."""
        chosen = map(self.local_state.__eq__, keys)
        if self.local_ports is not None:
            ports = list(map(self.local_ports.__getitem__, self._column16(buf, off, stride, k, self.layout.ports[0])))
            if not any(ports):  # receivers bound to ephemeral ports: none of them by address
                return
            chosen = map(and_, chosen, ports)
        local, add_local = self.layout.local.unpack_from, self.sink.add_local
        starts = range(off, off + k * stride, stride)
        for start, i in compress(zip(starts, range(k)), chosen):
            add_local(local(buf, start), [column[i] for column in columns])

    def _groups(self, buf, off, stride, k, keys, columns) -> None:
        local_groups, remote_groups = self.groups
        local, remote = (self._column16(buf, off, stride, k, port) for port in self.layout.ports)
        add_group = self.sink.add_group
        for key, lp, rp, rq, wq in zip(keys, local, remote, columns[0], columns[1]):
            mask = local_groups[lp] | remote_groups[rp]
            if mask:
                add_group(mask, key, rq, wq)
