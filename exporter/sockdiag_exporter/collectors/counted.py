"""Families whose sock_diag replies carry no queue sizes (vsock, xdp, tipc, smc): counts by type and state.

This kernel may lack their diag handlers; the collectors then report the handler unavailable.
"""

from typing import Callable, NamedTuple, Optional, Tuple

from .. import metrics as m
from ..diag import constants as c
from ..diag import requests
from ..diag.decoder import Layout
from . import names
from .base import Collector, Context, Samples, by_state_name, dump_or_none


class CountedFamily(NamedTuple):
    name: str
    request: Callable[[], bytes]
    layout: Layout
    split: Callable[[int], Tuple[int, int]]  # tally key -> (socket type, state)
    states: Optional[dict]  # None: the family has no state (label left empty)
    help: str


FAMILIES = (
    CountedFamily("vsock", requests.vsock, requests.VSOCK_LAYOUT, lambda w: ((w >> 8) & 0xFF, (w >> 16) & 0xFF),
                  names.VSOCK_STATES, "vsock (VM to host) sockets"),
    CountedFamily("xdp", requests.xdp, requests.XDP_LAYOUT, lambda w: ((w >> 8) & 0xFF, 0), None, "AF_XDP sockets"),
    CountedFamily("tipc", requests.tipc, requests.TIPC_LAYOUT, lambda k: (k & 0xFF, k >> 8), names.TIPC_STATES,
                  "TIPC sockets"),
    CountedFamily("smc", requests.smc, requests.SMC_LAYOUT, lambda s: (c.SOCK_STREAM, s), names.SMC_STATES,
                  "SMC (shared memory communications) sockets"),
)


class CountedCollector(Collector):
    """Socket counts by socket type and state for one family that reports no queues."""

    def __init__(self, family: CountedFamily):
        self.family = family
        self.name = family.name
        self.help = family.help

    def collect(self, ctx: Context, out: Samples) -> None:
        fam = self.family
        tally = dump_or_none(ctx, out, fam.request(), fam.layout, fam.name, "", f"{fam.name} dump")
        if tally is None:
            return
        by_type = {}
        for key, row in tally.items():
            sock_type, state = fam.split(key)
            by_type.setdefault(sock_type, []).append((state, row))
        for sock_type, rows in sorted(by_type.items()):
            type_name = names.socket_type_name(sock_type)
            if fam.states is None:
                out.add(m.SOCKETS, (fam.name, type_name, "", ""), sum(row[0] for _, row in rows))
                continue
            for state, row in by_state_name(rows, fam.states).items():
                out.add(m.SOCKETS, (fam.name, type_name, "", state), row[0])


COLLECTORS = tuple(CountedCollector(f) for f in FAMILIES)
