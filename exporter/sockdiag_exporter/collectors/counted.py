"""Families whose sock_diag replies carry no queue sizes (vsock, xdp, tipc, smc): counts by type and state.

This kernel may lack their diag handlers; the collectors then report the handler unavailable.
"""

from typing import Callable, NamedTuple, Optional

from ..diag import constants as c
from ..diag import requests
from ..diag.layout import Layout
from . import names
from .base import Collector, Context, Samples, dump_or_none
from .emit import emit_tally


class CountedFamily(NamedTuple):
    name: str
    request: Callable[[], bytes]
    layout: Layout
    states: Optional[dict]  # None: the family has no state (label left empty)
    help: str


FAMILIES = (
    CountedFamily("vsock", requests.vsock, requests.VSOCK_LAYOUT, names.VSOCK_STATES, "vsock (VM to host) sockets"),
    CountedFamily("xdp", requests.xdp, requests.XDP_LAYOUT, None, "AF_XDP sockets"),
    CountedFamily("tipc", requests.tipc, requests.TIPC_LAYOUT, names.TIPC_STATES, "TIPC sockets"),
    CountedFamily("smc", requests.smc, requests.SMC_LAYOUT, names.SMC_STATES,
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

        def split(key):
            sock_type = getattr(key, "type", c.SOCK_STREAM)  # SMC replies have no type: always stream
            return (fam.name, names.socket_type_name(sock_type), ""), fam.states, getattr(key, "state", 0)

        emit_tally(out, tally, split, ctx.options, queues=False)


COLLECTORS = tuple(CountedCollector(f) for f in FAMILIES)
