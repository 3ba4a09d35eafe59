"""sock_diag reply messages built field by field from the kernel's uapi structs, for the tests.

Written from the headers (linux/netlink.h, sock_diag.h, inet_diag.h, unix_diag.h, netlink_diag.h, packet_diag.h,
vm_sockets_diag.h, xdp_diag.h, smc_diag.h, tipc_netlink.h), not from the exporter: the reference decoder
(reference.py) and the golden replays of families this kernel lacks use them.
"""

import socket
import struct

# linux/netlink.h
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_MULTI, NLM_F_DUMP_INTR = 0x02, 0x10
SOCK_DIAG_BY_FAMILY = 20  # linux/sock_diag.h

# attribute types
INET_DIAG_INFO, INET_DIAG_SHUTDOWN, INET_DIAG_TOS, INET_DIAG_TCLASS = 2, 8, 5, 6
INET_DIAG_SKMEMINFO, INET_DIAG_MARK, INET_DIAG_PROTOCOL = 7, 15, 10
INET_DIAG_LOCALS, INET_DIAG_PEERS, INET_DIAG_CGROUP_ID, INET_DIAG_SOCKOPT = 12, 13, 21, 22
UNIX_DIAG_NAME, UNIX_DIAG_PEER, UNIX_DIAG_RQLEN, UNIX_DIAG_MEMINFO, UNIX_DIAG_SHUTDOWN, UNIX_DIAG_UID = 0, 2, 4, 5, 6, 7
NETLINK_DIAG_MEMINFO, NETLINK_DIAG_GROUPS, NETLINK_DIAG_FLAGS = 0, 1, 4
PACKET_DIAG_INFO, PACKET_DIAG_UID, PACKET_DIAG_MEMINFO = 0, 5, 6
TIPC_NLA_SOCK = 2  # enum { TIPC_NLA_UNSPEC, TIPC_NLA_BEARER, TIPC_NLA_SOCK, ... }
TIPC_NLA_SOCK_ADDR, TIPC_NLA_SOCK_REF, TIPC_NLA_SOCK_TYPE = 1, 2, 6
TIPC_NLA_SOCK_INO, TIPC_NLA_SOCK_UID, TIPC_NLA_SOCK_TIPC_STATE, TIPC_NLA_SOCK_COOKIE = 7, 8, 9, 10
NLA_F_NESTED = 0x8000


def nlmsg(payload: bytes, seq: int, mtype: int = SOCK_DIAG_BY_FAMILY, flags: int = NLM_F_MULTI,
          pid: int = 0) -> bytes:
    """struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; } + payload, padded to 4 bytes."""
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, mtype, flags, seq, pid) + payload + bytes(-length % 4)


def done(seq: int, err: int = 0) -> bytes:
    return nlmsg(struct.pack("=i", err), seq, NLMSG_DONE)


def error(seq: int, err: int) -> bytes:
    """NLMSG_ERROR: struct nlmsgerr { int error; struct nlmsghdr msg; } (errno 0 is an ACK)."""
    return nlmsg(struct.pack("=i", err) + bytes(16), seq, NLMSG_ERROR, 0)


def attr(atype: int, payload: bytes) -> bytes:
    """struct nlattr { u16 nla_len; u16 nla_type; } + payload, padded to 4 bytes."""
    return struct.pack("=HH", 4 + len(payload), atype) + payload + bytes(-len(payload) % 4)


def sockid(family: int, sport: int, dport: int, src: str, dst: str, ifindex: int = 0, cookie: int = 0) -> bytes:
    """struct inet_diag_sockid { be16 sport, dport; be32 src[4], dst[4]; u32 if; u32 cookie[2]; }"""
    if family == socket.AF_INET6:
        s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    else:
        s, d = socket.inet_pton(socket.AF_INET, src) + bytes(12), socket.inet_pton(socket.AF_INET, dst) + bytes(12)
    return struct.pack("!HH", sport, dport) + s + d + struct.pack("=IQ", ifindex, cookie)


def inet_diag_msg(family: int, state: int, rqueue: int, wqueue: int, sport: int = 0, dport: int = 0,
                  src: str = None, dst: str = None, ifindex: int = 0, timer: int = 0, retrans: int = 0,
                  expires: int = 0, uid: int = 0, inode: int = 0, cookie: int = 0) -> bytes:
    """struct inet_diag_msg { u8 family, state, timer, retrans; struct inet_diag_sockid id; u32 expires, rqueue,
    wqueue, uid, inode; } (72 bytes)."""
    any_addr = "::" if family == socket.AF_INET6 else "0.0.0.0"
    return (struct.pack("=BBBB", family, state, timer, retrans)
            + sockid(family, sport, dport, src or any_addr, dst or any_addr, ifindex, cookie)
            + struct.pack("=IIIII", expires, rqueue, wqueue, uid, inode))


def meminfo(values) -> bytes:
    """u32 sk_meminfo[SK_MEMINFO_VARS]: rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem,
    backlog, drops (older kernels send fewer)."""
    return struct.pack(f"={len(values)}I", *values)


def unix_diag_msg(sock_type: int, state: int, inode: int = 0, cookie: int = 0) -> bytes:
    """struct unix_diag_msg { u8 family, type, state, pad; u32 ino; u32 cookie[2]; } (16 bytes)."""
    return struct.pack("=BBBBIQ", socket.AF_UNIX, sock_type, state, 0, inode, cookie)


def unix_rqlen(rqueue: int, wqueue: int) -> bytes:
    return attr(UNIX_DIAG_RQLEN, struct.pack("=II", rqueue, wqueue))


def netlink_diag_msg(sock_type: int, protocol: int, state: int, portid: int = 0, dst_portid: int = 0,
                     dst_group: int = 0, inode: int = 0, cookie: int = 0) -> bytes:
    """struct netlink_diag_msg { u8 family, type, protocol, state; u32 portid, dst_portid, dst_group, ino;
    u32 cookie[2]; } (28 bytes)."""
    return struct.pack("=BBBBIIIIQ", socket.AF_NETLINK, sock_type, protocol, state, portid, dst_portid, dst_group,
                       inode, cookie)


def packet_diag_msg(sock_type: int, num: int, inode: int = 0, cookie: int = 0) -> bytes:
    """struct packet_diag_msg { u8 family, type; u16 num; u32 ino; u32 cookie[2]; } (16 bytes); num is the
    ethertype in host order."""
    return struct.pack("=BBHIQ", socket.AF_PACKET, sock_type, num, inode, cookie)


def vsock_diag_msg(sock_type: int, state: int, shutdown: int = 0, src_cid: int = 2, src_port: int = 0,
                   dst_cid: int = 0, dst_port: int = 0, inode: int = 0, cookie: int = 0) -> bytes:
    """struct vsock_diag_msg { u8 family, type, state, shutdown; u32 src_cid, src_port, dst_cid, dst_port, ino;
    u32 cookie[2]; } (32 bytes)."""
    return struct.pack("=BBBBIIIIIQ", 40, sock_type, state, shutdown, src_cid, src_port, dst_cid, dst_port, inode,
                       cookie)


def xdp_diag_msg(sock_type: int, inode: int = 0, cookie: int = 0) -> bytes:
    """struct xdp_diag_msg { u8 family, type; u16 pad; u32 ino; u32 cookie[2]; } (16 bytes)."""
    return struct.pack("=BBHIQ", 44, sock_type, 0, inode, cookie)


def smc_diag_msg(family: int, state: int, sport: int = 0, dport: int = 0, mode: int = 0, shutdown: int = 0,
                 uid: int = 0, inode: int = 0) -> bytes:
    """struct smc_diag_msg { u8 family, state, mode, shutdown; struct inet_diag_sockid id; u32 uid;
    aligned_u64 inode; } (64 bytes). family is AF_INET or AF_INET6 (the sockid's)."""
    any_addr = "::" if family == socket.AF_INET6 else "0.0.0.0"
    return (struct.pack("=BBBB", family, state, mode, shutdown) + sockid(family, sport, dport, any_addr, any_addr)
            + struct.pack("=IQ", uid, inode))


def tipc_sock(sock_type: int, state: int, inode: int = 0, uid: int = 0, cookie: int = 0, addr: int = 0) -> bytes:
    """A TIPC reply's payload: no fixed struct, one nested TIPC_NLA_SOCK holding u32 attributes (net/tipc/socket.c,
    tipc_sk_fill_sock_diag)."""
    inner = (attr(TIPC_NLA_SOCK_ADDR, struct.pack("=I", addr)) + attr(TIPC_NLA_SOCK_REF, struct.pack("=I", 1))
             + attr(TIPC_NLA_SOCK_TYPE, struct.pack("=I", sock_type))
             + attr(TIPC_NLA_SOCK_INO, struct.pack("=I", inode)) + attr(TIPC_NLA_SOCK_UID, struct.pack("=I", uid))
             + attr(TIPC_NLA_SOCK_TIPC_STATE, struct.pack("=I", state))
             + attr(TIPC_NLA_SOCK_COOKIE, struct.pack("=Q", cookie)))
    return attr(TIPC_NLA_SOCK | NLA_F_NESTED, inner)


# linux/tcp.h struct tcp_info as a 6.18 kernel sends it (280 bytes): u8 x 8 (two of them bit fields), u32 x 24,
# u64 x 4, u32 x 6, u64 x 4, u32 x 2, u64 x 2, u32 x 6, u16 x 2, u32 x 8, u16 x 2.
TCP_INFO_FORMAT = "=8B24I4Q6I4Q2I2Q6I2H8I2H"
TCP_INFO_NAMES = (
    "state", "ca_state", "retransmits", "probes", "backoff", "options", "wscale", "app_limited_flags",
    "rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans", "fackets",
    "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv", "pmtu", "rcv_ssthresh", "rtt", "rttvar",
    "snd_ssthresh", "snd_cwnd", "advmss", "reordering", "rcv_rtt", "rcv_space", "total_retrans",
    "pacing_rate", "max_pacing_rate", "bytes_acked", "bytes_received",
    "segs_out", "segs_in", "notsent_bytes", "min_rtt", "data_segs_in", "data_segs_out",
    "delivery_rate", "busy_time", "rwnd_limited", "sndbuf_limited", "delivered", "delivered_ce",
    "bytes_sent", "bytes_retrans", "dsack_dups", "reord_seen", "rcv_ooopack", "snd_wnd", "rcv_wnd", "rehash",
    "total_rto", "total_rto_recoveries", "total_rto_time", "received_ce", "delivered_e1_bytes",
    "delivered_e0_bytes", "delivered_ce_bytes", "received_e1_bytes", "received_e0_bytes", "received_ce_bytes",
    "accecn_fail_mode", "accecn_opt_seen",
)
TCP_INFO_SIZE = struct.calcsize(TCP_INFO_FORMAT)  # 280
INET_DIAG_PAD = 14


def tcp_info(length: int = TCP_INFO_SIZE, **fields) -> bytes:
    """struct tcp_info with the given fields (the rest 0), cut to length bytes as an older kernel sends it."""
    unknown = set(fields) - set(TCP_INFO_NAMES)
    assert not unknown, unknown
    return struct.pack(TCP_INFO_FORMAT, *(fields.get(name, 0) for name in TCP_INFO_NAMES))[:length]


def destroy_event(family: int, protocol: int, sport: int = 0, dport: int = 0, rqueue: int = 0, wqueue: int = 0,
                  attrs=None) -> bytes:
    """A destroy event as sock_diag_broadcast_destroy sends it: nlmsghdr (seq 0, pid 0, flags 0) + inet_diag_msg
    (state TCP_CLOSE) + attributes; attrs defaults to INET_DIAG_PROTOCOL (net/ipv4/inet_diag.c,
    inet_diag_handler_get_info), the caller adds INET_DIAG_INFO for TCP."""
    body = inet_diag_msg(family, 7, rqueue, wqueue, sport, dport)
    if attrs is None:
        attrs = [attr(INET_DIAG_PROTOCOL, bytes([protocol]))]
    return nlmsg(body + b"".join(attrs), 0, flags=0)
