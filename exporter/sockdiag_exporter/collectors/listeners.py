"""Listening sockets one by one: per address (SO_REUSEPORT sockets summed), fullest first, the rest folded."""

import socket
from typing import Dict, Iterable, List, NamedTuple

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


def emit_listeners(out: Samples, listeners: List[Listener], cap: int, groups: Iterable[tuple] = ()) -> None:
    """Per-listener queue series, at most cap of them (fullest first, then by address); the rest summed into
    address="other" of their (family, socket_type, protocol), with how many were folded where some were, and for
    every (family, socket_type, protocol) in groups (the full profile's zeros)."""
    merged: Dict[tuple, list] = {}
    for lst in listeners:
        row = merged.setdefault(lst[:4], [0, 0, 0])
        row[0] += 1
        row[1] += lst.length
        row[2] += lst.limit

    def fill(item):
        labels, (_, length, limit) = item
        ratio = length / limit if limit else (float("inf") if length else 0.0)
        return -ratio, labels

    ranked = sorted(merged.items(), key=fill)
    folded: Dict[tuple, list] = {group: [0, 0, 0] for group in groups}
    for labels, (sockets, length, limit) in ranked[cap:]:
        row = folded.setdefault(labels[:3], [0, 0, 0])
        row[0] += sockets
        row[1] += length
        row[2] += limit
    for labels, (sockets, length, limit) in ranked[:cap]:
        _emit_listener(out, labels, sockets, length, limit)
    for group, (sockets, length, limit) in folded.items():
        if sockets or group in groups:
            out.add(m.LISTENERS_FOLDED, group, sockets)
        if sockets:
            _emit_listener(out, group + ("other",), sockets, length, limit)


def _emit_listener(out: Samples, labels: tuple, sockets: int, length: int, limit: int) -> None:
    out.add(m.LISTENER_QUEUE_LENGTH, labels, length)
    out.add(m.LISTENER_QUEUE_LIMIT, labels, limit)
    out.add(m.LISTENER_SOCKETS, labels, sockets)
