"""Sockets reported one by one by local address: listeners (fullest first) and UDP receivers (dropping first).

Sockets sharing an address (SO_REUSEPORT) are summed into one series; beyond a cap the rest are summed into
address="other" of their (family, socket_type, protocol), with how many sockets were folded.
"""

import socket
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from .. import metrics as m
from .base import Samples


NEAR_LIMIT = 0.9  # a listener this full is in trouble: the default threshold of the accept-queue alert


def near_limit(length: int, limit: int) -> bool:
    """Whether an accept queue is near its limit (what makes a namespace or a cgroup worth keeping apart)."""
    return bool(length) and length >= NEAR_LIMIT * limit


class Listener(NamedTuple):
    family: str
    socket_type: str
    protocol: str
    address: str
    length: int
    limit: int
    drops: Optional[int] = None  # SK_MEMINFO drops (inet); None where the kernel counts none (unix)


def interface_address(address: str, ifindex: int) -> str:
    """Mark a listener bound to a device like ss does: 0.0.0.0%eth0:80."""
    if not ifindex:
        return address
    try:
        name = socket.if_indextoname(ifindex)
    except OSError:
        name = f"if{ifindex}"
    host, _, port = address.rpartition(":")
    return f"{host}%{name}:{port}"


def _fill(length: int, limit: int) -> float:
    return length / limit if limit else (float("inf") if length else 0.0)


def _cap(rows: Dict[tuple, list], cap: int, rank: Callable, merge: Callable, groups: Iterable[tuple]):
    """rows (labels with address -> row) ranked by rank(row), best first: (the first cap of them, the rest merged
    into one row per (family, socket_type, protocol): groups' rows exist even when nothing was folded)."""
    ranked = sorted(rows.items(), key=lambda item: (rank(item[1]), item[0]))
    folded: Dict[tuple, Optional[list]] = dict.fromkeys(groups)
    for labels, row in ranked[cap:]:
        folded[labels[:3]] = merge(folded.get(labels[:3]), row)
    return ranked[:cap], folded


# --- listeners: row = [sockets, length, limit, fullest socket's fill, drops or None, half-open or None] ---

def _merge_listener(row: Optional[list], other: list) -> list:
    if row is None:
        return list(other)
    return [row[0] + other[0], row[1] + other[1], row[2] + other[2], max(row[3], other[3]),
            None if row[4] is None else row[4] + other[4], None if row[5] is None else row[5] + other[5]]


def emit_listeners(out: Samples, listeners: List[Listener], cap: int, groups: Iterable[tuple] = (),
                   half_open: Optional[Dict[tuple, int]] = None, zeros: bool = True) -> None:
    """Per-listener series, at most cap of them (the fullest socket's fill first, then the summed fill, then the
    address); the rest summed into address="other" of their (family, socket_type, protocol), with how many were
    folded where some were, and for every (family, socket_type, protocol) in groups (the full profile's zeros).

    half_open: labels (with address) -> connections in SYN_RECV, for protocols that have a SYN queue; None for none.
    zeros: also the fullest socket's fill, the drops and the half-open connections of a listener where they are 0
    (the full profile); the default profile serves them once they are not (absence is 0).
    """
    merged: Dict[tuple, list] = {}
    for lst in listeners:
        merged[lst[:4]] = _merge_listener(merged.get(lst[:4]),
                                          [1, lst.length, lst.limit, _fill(lst.length, lst.limit), lst.drops, None])
    if half_open is not None:
        for labels, row in merged.items():
            row[5] = half_open.get(labels, 0)
    kept, folded = _cap(merged, cap, lambda row: (-row[3], -_fill(row[1], row[2])), _merge_listener, groups)
    for labels, row in kept:
        _emit_listener(out, labels, row, zeros)
    for group, row in folded.items():
        out.add(m.LISTENERS_FOLDED, group, row[0] if row else 0)
        if row:
            _emit_listener(out, group + ("other",), row, zeros)


def _emit_listener(out: Samples, labels: tuple, row: list, zeros: bool) -> None:
    sockets, length, limit, fullest, drops, half_open = row
    out.add(m.LISTENER_QUEUE_LENGTH, labels, length)
    out.add(m.LISTENER_QUEUE_LIMIT, labels, limit)
    out.add(m.LISTENER_SOCKETS, labels, sockets)
    for metric, value in ((m.LISTENER_MAX_FILL, fullest), (m.LISTENER_DROPS, drops), (m.LISTENER_HALF_OPEN, half_open)):
        if value is not None and (value or zeros):
            out.add(metric, labels, value)


# --- UDP receivers: row = [sockets, receive queue, receive buffer, drops] ---

def _merge_receiver(row: Optional[list], other: list) -> list:
    return list(other) if row is None else [a + b for a, b in zip(row, other)]


def emit_receivers(out: Samples, receivers: Dict[tuple, list], cap: int,
                   folded: Dict[Tuple[str, str, str], list], zeros: bool = True) -> None:
    """Per-receiver series, at most cap of them (the most drops first, then the fullest buffer, then the address);
    the rest summed into address="other" with the rows of folded ((family, socket_type, protocol) -> the sockets
    not tallied by address), with how many sockets that is (only where there are some). zeros: also drops where
    they are 0 (the full profile)."""
    kept, beyond = _cap(receivers, cap, lambda row: (-row[3], -_fill(row[1], row[2])), _merge_receiver, ())
    for group, row in beyond.items():
        folded[group] = _merge_receiver(folded.get(group), row)
    for labels, row in kept:
        _emit_receiver(out, labels, row, zeros)
    for group, row in sorted(folded.items()):
        if row[0]:
            out.add(m.RECEIVERS_FOLDED, group, row[0])
            _emit_receiver(out, group + ("other",), row, zeros)


def _emit_receiver(out: Samples, labels: tuple, row: list, zeros: bool) -> None:
    sockets, queue, buffer, drops = row
    out.add(m.RECEIVER_QUEUE, labels, queue)
    out.add(m.RECEIVER_BUFFER, labels, buffer)
    if drops or zeros:
        out.add(m.RECEIVER_DROPS, labels, drops)
    out.add(m.RECEIVER_SOCKETS, labels, sockets)
