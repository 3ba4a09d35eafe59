"""Families this kernel may lack: reported as unavailable (never silently zero), counted where present."""

import socket
import struct

import pytest

from helpers import scrape

from sockdiag_exporter.diag import requests
from sockdiag_exporter.diag.errors import DiagUnsupported
from sockdiag_exporter.diag.netlink import DiagSocket

# (collector, family label, protocol label, how to make one socket of it)
FAMILIES = [
    ("sctp", "inet", "sctp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)),
    ("dccp", "inet", "dccp", lambda: socket.socket(socket.AF_INET, 6, 33)),
    ("vsock", "vsock", "", lambda: socket.socket(40, socket.SOCK_STREAM)),
    ("xdp", "xdp", "", lambda: socket.socket(44, socket.SOCK_RAW)),
    ("tipc", "tipc", "", lambda: socket.socket(30, socket.SOCK_RDM)),
    ("smc", "smc", "", lambda: socket.socket(43, socket.SOCK_STREAM)),
]


@pytest.mark.parametrize("collector,family,protocol,make", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family_is_counted_or_reported_unavailable(netns, collector, family, protocol, make):
    def work():
        try:
            netns.keep.append(make())
            return True
        except OSError:
            return False

    kernel_has_family = netns.run(work)
    exposition = scrape(netns, collector)
    assert exposition.value("sockdiag_scrape_collector_success", collector=collector) == 1
    available = exposition.value("sockdiag_diag_handler_available", family=family, protocol=protocol)
    counted = sum(exposition.select("sockdiag_sockets", family=family, protocol=protocol).values())
    if not kernel_has_family:
        # No such sockets can exist here, so no handler can: the exporter must say so and emit no counts.
        assert available == 0
        assert not exposition.select("sockdiag_sockets", family=family, protocol=protocol)
    elif available:
        assert counted >= 1
    else:  # the protocol exists but its diag module does not: still reported, not silently zero
        assert not exposition.select("sockdiag_sockets", family=family, protocol=protocol)


def test_unknown_family_on_the_real_kernel_is_unsupported():
    diag = DiagSocket()
    with pytest.raises(DiagUnsupported):
        diag.dump(struct.pack("=BBHIIIII", 99, 0, 0, 0, 0, 0, 0, 0), requests.INET_LAYOUT, "family 99")
    diag.close()
