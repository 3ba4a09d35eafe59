"""Dump requests (the payload after the netlink header) and the layouts of their replies, per family.

Each request asks only for the attributes a tally uses: inet needs none (queues are in the fixed header),
unix asks for UNIX_DIAG_RQLEN, netlink and packet for their SK_MEMINFO (their queues live only there).
SK_MEMINFO for inet and unix only when memory metrics are wanted: it makes every message longer.
Values of every layout: receive queue, send queue, then (memory layouts) the SK_MEMINFO_VARS values.
"""

import socket
import struct
from typing import NamedTuple

from . import constants as c
from .attrs import attr_u32, walk_attrs
from .layout import Layout

# Every TCP state (bits 1..12), as `ss -a` asks. Not TCP_BOUND_INACTIVE (bit 13, kernel >= 6.8: sockets bound but
# never listening or connected): it makes the kernel walk the bind hash too, measured +28% dump time at 100k sockets.
INET_ALL_STATES = 0x1FFE
ALL_STATES = 0xFFFFFFFF

_SOCKID_ZERO = bytes(48)  # struct inet_diag_sockid: wildcard

MEMINFO_NAMES = ("rmem_alloc", "rcvbuf", "wmem_alloc", "sndbuf", "fwd_alloc", "wmem_queued", "optmem", "backlog",
                 "drops")


def _meminfo(attr_type: int):
    return tuple((attr_type, 4 * i) for i in range(c.SK_MEMINFO_VARS))


def _queues_from_meminfo(attr_type: int):
    return ((attr_type, 4 * c.SK_MEMINFO_RMEM_ALLOC), (attr_type, 4 * c.SK_MEMINFO_WMEM_ALLOC))


STATE = (("state", 0, 8),)  # a key that is the state byte itself

# inet_diag_msg: key = idiag_state (byte 1); values: idiag_rqueue (56), idiag_wqueue (60); ports at 4 and 6, local
# and remote address at 8 and 24, bound device at 40, idiag_timer at 2
_INET = dict(key=(1, 1), fields=(56, 60), ports=(4, 6), addresses=8, ifindex=40, timer=2)
INET_LAYOUT = Layout(c.INET_DIAG_MSG_SIZE, STATE, **_INET)
INET_MEMORY_LAYOUT = Layout(c.INET_DIAG_MSG_SIZE, STATE, attrs=_meminfo(c.INET_DIAG_SKMEMINFO), **_INET)
# sctp_diag's idiag_timer names an SCTP timer (3 is T2_SHUTDOWN, not TIME_WAIT): no timer in its layouts
_SCTP = dict(_INET, timer=None)
SCTP_LAYOUT = Layout(c.INET_DIAG_MSG_SIZE, STATE, **_SCTP)
SCTP_MEMORY_LAYOUT = Layout(c.INET_DIAG_MSG_SIZE, STATE, attrs=_meminfo(c.INET_DIAG_SKMEMINFO), **_SCTP)
# unix_diag_msg: key = first word (udiag_family | udiag_type << 8 | udiag_state << 16); values: UNIX_DIAG_RQLEN
_UNIX_KEY = (("type", 8, 8), ("state", 16, 8))
_UNIX_QUEUES = ((c.UNIX_DIAG_RQLEN, 0), (c.UNIX_DIAG_RQLEN, 4))
UNIX_LAYOUT = Layout(c.UNIX_DIAG_MSG_SIZE, _UNIX_KEY, key=(0, 4), attrs=_UNIX_QUEUES)
UNIX_MEMORY_LAYOUT = Layout(c.UNIX_DIAG_MSG_SIZE, _UNIX_KEY, key=(0, 4),
                            attrs=_UNIX_QUEUES + _meminfo(c.UNIX_DIAG_MEMINFO))
# netlink_diag_msg: key = first word (family | type << 8 | protocol << 16 | state << 24); values: rmem, wmem
_NETLINK_KEY = (("type", 8, 8), ("protocol", 16, 8), ("state", 24, 8))
NETLINK_LAYOUT = Layout(c.NETLINK_DIAG_MSG_SIZE, _NETLINK_KEY, key=(0, 4),
                        attrs=_queues_from_meminfo(c.NETLINK_DIAG_MEMINFO))
NETLINK_MEMORY_LAYOUT = Layout(c.NETLINK_DIAG_MSG_SIZE, _NETLINK_KEY, key=(0, 4), attrs=_queues_from_meminfo(
    c.NETLINK_DIAG_MEMINFO) + _meminfo(c.NETLINK_DIAG_MEMINFO))
# packet_diag_msg: key = first word (family | type << 8 | pdiag_num << 16, the ethertype in host order)
_PACKET_KEY = (("type", 8, 8), ("protocol", 16, 16))
PACKET_LAYOUT = Layout(c.PACKET_DIAG_MSG_SIZE, _PACKET_KEY, key=(0, 4),
                       attrs=_queues_from_meminfo(c.PACKET_DIAG_MEMINFO))
PACKET_MEMORY_LAYOUT = Layout(c.PACKET_DIAG_MSG_SIZE, _PACKET_KEY, key=(0, 4), attrs=_queues_from_meminfo(
    c.PACKET_DIAG_MEMINFO) + _meminfo(c.PACKET_DIAG_MEMINFO))
# vsock_diag_msg: key = first word (family | type << 8 | state << 16 | shutdown << 24)
VSOCK_LAYOUT = Layout(c.VSOCK_DIAG_MSG_SIZE, (("type", 8, 8), ("state", 16, 8)), key=(0, 4))
# xdp_diag_msg: key = first word (family | type << 8)
XDP_LAYOUT = Layout(c.XDP_DIAG_MSG_SIZE, (("type", 8, 8),), key=(0, 4))
# smc_diag_msg: key = diag_state (byte 1)
SMC_LAYOUT = Layout(c.SMC_DIAG_MSG_SIZE, STATE, key=(1, 1))
# TIPC: attributes only, nested in TIPC_NLA_SOCK; key = TIPC_NLA_SOCK_TYPE | TIPC_NLA_SOCK_TIPC_STATE << 8
TIPC_LAYOUT = Layout(c.TIPC_DIAG_MSG_SIZE, (("type", 0, 8), ("state", 8, 8)), nest=c.TIPC_NLA_SOCK,
                     key_attrs=(c.TIPC_NLA_SOCK_TYPE, c.TIPC_NLA_SOCK_TIPC_STATE))


def inet(family: int, protocol: int, states: int = INET_ALL_STATES, memory: bool = False) -> bytes:
    """inet_diag_req_v2; protocols above 255 (MPTCP) go in an INET_DIAG_REQ_PROTOCOL attribute, as ss does."""
    ext = 1 << (c.INET_DIAG_SKMEMINFO - 1) if memory else 0
    req = struct.pack("=BBBBI", family, protocol & 0xFF, ext, 0, states) + _SOCKID_ZERO
    if protocol > 0xFF:
        req += struct.pack("=HHI", 8, c.INET_DIAG_REQ_PROTOCOL, protocol)
    return req


def unix(states: int = ALL_STATES, memory: bool = False, names: bool = False) -> bytes:
    """unix_diag_req with the receive/send queue lengths (and memory info, and names)."""
    show = c.UDIAG_SHOW_RQLEN | (c.UDIAG_SHOW_MEMINFO if memory else 0) | (c.UDIAG_SHOW_NAME if names else 0)
    return struct.pack("=BBHIIIII", c.AF_UNIX, 0, 0, states, 0, show, 0, 0)


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


LISTEN_STATES = 1 << c.TCP_LISTEN
_INET_LISTENER = struct.Struct("=BxxxH2x16s16xI8x4xII")  # family, sport, src, if, rqueue, wqueue
_U64 = struct.Struct("=Q")


class InetListener(NamedTuple):
    address: str  # "127.0.0.1:80", "[::]:443"
    port: int  # host order
    ifindex: int  # bound device, 0 for none
    length: int  # accept queue (idiag_rqueue of a listener)
    limit: int  # its limit (idiag_wqueue of a listener)
    memory: tuple  # the SK_MEMINFO values when asked for, else ()
    cgroup: int  # cgroup v2 id when asked for, else 0


def endpoint_text(family: int, address: bytes, port: int) -> str:
    """An inet address (16 bytes, IPv4 in the first 4) and port as ss writes them: 127.0.0.1:80, [::1]:443."""
    if family == c.AF_INET6:
        return f"[{socket.inet_ntop(socket.AF_INET6, address)}]:{port}"
    return f"{socket.inet_ntop(socket.AF_INET, address[:4])}:{port}"


def inet_listener(buf, payload: int, end: int) -> InetListener:
    family, port, src, ifindex, rq, wq = _INET_LISTENER.unpack_from(buf, payload)
    port = socket.ntohs(port)
    address = endpoint_text(family, src, port)
    found = walk_attrs(buf, payload + c.INET_DIAG_MSG_SIZE, end)
    memory = _meminfo_values(buf, found, c.INET_DIAG_SKMEMINFO)
    cgroup = found.get(c.INET_DIAG_CGROUP_ID)
    cgroup_id = _U64.unpack_from(buf, cgroup[0])[0] if cgroup and cgroup[1] >= 8 else 0
    return InetListener(address, port, ifindex, rq, wq, memory, cgroup_id)


def _meminfo_values(buf, found: dict, attr_type: int) -> tuple:
    if attr_type not in found:
        return ()
    offset, size = found[attr_type]
    count = min(size // 4, c.SK_MEMINFO_VARS)
    return struct.unpack_from(f"={count}I", buf, offset) + (0,) * (c.SK_MEMINFO_VARS - count)


class UnixListener(NamedTuple):
    type: int  # SOCK_STREAM or SOCK_SEQPACKET
    name: str  # the path, or @name for an abstract name, "" for none
    length: int
    limit: int


def unix_listener(buf, payload: int, end: int) -> UnixListener:
    sock_type = buf[payload + 1]
    found = walk_attrs(buf, payload + c.UNIX_DIAG_MSG_SIZE, end)
    name = b""
    if c.UNIX_DIAG_NAME in found:
        start, size = found[c.UNIX_DIAG_NAME]
        name = bytes(buf[start : start + size])
    if name.startswith(b"\0"):
        text = "@" + name[1:].decode("utf-8", "backslashreplace")
    else:
        text = name.rstrip(b"\0").decode("utf-8", "backslashreplace")
    rq, wq = (attr_u32(buf, found, c.UNIX_DIAG_RQLEN, offset) for offset in (0, 4))
    return UnixListener(sock_type, text, rq, wq)
