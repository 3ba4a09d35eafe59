"""Dump requests (the payload after the netlink header) and the layouts of their replies, per family.

Each request asks only for the attributes a tally uses: inet needs none (queues are in the fixed header),
unix asks for UNIX_DIAG_RQLEN, netlink and packet for their SK_MEMINFO (their queues live only there).
"""

import struct

from . import constants as c
from .decoder import Layout

# Every TCP state (bits 1..12), as `ss -a` asks. Not TCP_BOUND_INACTIVE (bit 13, kernel >= 6.8: sockets bound but
# never listening or connected): it makes the kernel walk the bind hash too, measured +28% dump time at 100k sockets.
INET_ALL_STATES = 0x1FFE
ALL_STATES = 0xFFFFFFFF

_SOCKID_ZERO = bytes(48)  # struct inet_diag_sockid: wildcard

# inet_diag_msg: key = idiag_state (byte 1); values: idiag_rqueue (56), idiag_wqueue (60)
INET_LAYOUT = Layout(c.INET_DIAG_MSG_SIZE, key=(1, 1), fields=(56, 60))
# unix_diag_msg: key = first word (family | type << 8 | state << 16); values: UNIX_DIAG_RQLEN rqueue, wqueue
UNIX_LAYOUT = Layout(c.UNIX_DIAG_MSG_SIZE, key=(0, 4), attrs=((c.UNIX_DIAG_RQLEN, 0), (c.UNIX_DIAG_RQLEN, 4)))
# netlink_diag_msg: key = first word (family | type << 8 | protocol << 16 | state << 24); values: rmem, wmem
NETLINK_LAYOUT = Layout(
    c.NETLINK_DIAG_MSG_SIZE,
    key=(0, 4),
    attrs=((c.NETLINK_DIAG_MEMINFO, 4 * c.SK_MEMINFO_RMEM_ALLOC), (c.NETLINK_DIAG_MEMINFO, 4 * c.SK_MEMINFO_WMEM_ALLOC)),
)
# packet_diag_msg: key = first word (family | type << 8 | pdiag_num << 16); values: rmem, wmem
PACKET_LAYOUT = Layout(
    c.PACKET_DIAG_MSG_SIZE,
    key=(0, 4),
    attrs=((c.PACKET_DIAG_MEMINFO, 4 * c.SK_MEMINFO_RMEM_ALLOC), (c.PACKET_DIAG_MEMINFO, 4 * c.SK_MEMINFO_WMEM_ALLOC)),
)
# vsock_diag_msg: key = first word (family | type << 8 | state << 16 | shutdown << 24)
VSOCK_LAYOUT = Layout(c.VSOCK_DIAG_MSG_SIZE, key=(0, 4))
# xdp_diag_msg: key = first word (family | type << 8)
XDP_LAYOUT = Layout(c.XDP_DIAG_MSG_SIZE, key=(0, 4))
# smc_diag_msg: key = diag_state (byte 1)
SMC_LAYOUT = Layout(c.SMC_DIAG_MSG_SIZE, key=(1, 1))
# TIPC: attributes only, nested in TIPC_NLA_SOCK; key = type | state << 8
TIPC_LAYOUT = Layout(
    c.TIPC_DIAG_MSG_SIZE, nest=c.TIPC_NLA_SOCK, key_attrs=(c.TIPC_NLA_SOCK_TYPE, c.TIPC_NLA_SOCK_TIPC_STATE)
)


def inet(family: int, protocol: int, states: int = INET_ALL_STATES) -> bytes:
    """inet_diag_req_v2; protocols above 255 (MPTCP) go in an INET_DIAG_REQ_PROTOCOL attribute, as ss does."""
    req = struct.pack("=BBBBI", family, protocol & 0xFF, 0, 0, states) + _SOCKID_ZERO
    if protocol > 0xFF:
        req += struct.pack("=HHI", 8, c.INET_DIAG_REQ_PROTOCOL, protocol)
    return req


def unix() -> bytes:
    """unix_diag_req for every state, with the receive/send queue lengths."""
    return struct.pack("=BBHIIIII", c.AF_UNIX, 0, 0, ALL_STATES, 0, c.UDIAG_SHOW_RQLEN, 0, 0)


def netlink() -> bytes:
    """netlink_diag_req for every netlink protocol, with memory info."""
    return struct.pack("=BBHIIII", c.AF_NETLINK, c.NDIAG_PROTO_ALL, 0, 0, c.NDIAG_SHOW_MEMINFO, 0, 0)


def packet() -> bytes:
    """packet_diag_req with memory info."""
    return struct.pack("=BBHIIII", c.AF_PACKET, 0, 0, 0, c.PACKET_SHOW_MEMINFO, 0, 0)


def vsock() -> bytes:
    """vsock_diag_req for every state."""
    return struct.pack("=BBHIIIII", c.AF_VSOCK, 0, 0, ALL_STATES, 0, 0, 0, 0)


def xdp() -> bytes:
    """xdp_diag_req without extras."""
    return struct.pack("=BBHIIII", c.AF_XDP, 0, 0, 0, 0, 0, 0)


def tipc() -> bytes:
    """tipc_sock_diag_req for every state."""
    return struct.pack("=BBHI", c.AF_TIPC, 0, 0, ALL_STATES)


def smc() -> bytes:
    """smc_diag_req without extensions (dumps SMC over IPv4 and IPv6)."""
    return struct.pack("=BBBB", c.AF_SMC, 0, 0, 0) + _SOCKID_ZERO
