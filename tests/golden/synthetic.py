"""A make-believe kernel for the families this machine's kernel has no diag handler for (sctp, dccp, raw_diag,
vsock, xdp, tipc, smc): a fixed table of sockets built field by field from the kernel's structs (diagmsg.py),
answering each dump request the way the kernel's handler would (family, protocol and state filter)."""

import errno
import socket
import struct
from typing import Dict, List, Optional, Tuple

import diagmsg as dm

AF_TIPC, AF_VSOCK, AF_SMC, AF_XDP = 30, 40, 43, 44
SCTP, DCCP, RAW = 132, 33, 255
INET_DIAG_REQ_PROTOCOL = 3


def sockaddr_in(addr: str, port: int) -> bytes:
    """struct sockaddr_in, as sctp_diag puts them in INET_DIAG_LOCALS/PEERS (one per address)."""
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_pton(socket.AF_INET, addr) + bytes(8)


def sockaddr_in6(addr: str, port: int) -> bytes:
    return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0) + socket.inet_pton(socket.AF_INET6, addr)
            + struct.pack("=I", 0))


def _sctp(family, state, rq, wq, sport, dport, local, peer=None):
    """An SCTP endpoint (state TCP_LISTEN) or association (enum sctp_state) with its address lists."""
    pack = sockaddr_in6 if family == socket.AF_INET6 else sockaddr_in
    attrs = dm.attr(dm.INET_DIAG_LOCALS, pack(local, sport))
    if peer:
        attrs += dm.attr(dm.INET_DIAG_PEERS, pack(peer, dport))
    return (family, SCTP, state), dm.inet_diag_msg(family, state, rq, wq, sport, dport, local, peer) + attrs


def _inet(family, protocol, state, rq, wq, sport=0, dport=0, local=None, peer=None, attrs=b"", timer=0):
    return (family, protocol, state), dm.inet_diag_msg(family, state, rq, wq, sport, dport, local, peer,
                                                       timer=timer) + attrs


# (family, protocol, state) -> message payload; protocol 0 where the family has none
SOCKETS: List[Tuple[tuple, bytes]] = [
    # SCTP: one-to-many endpoints listening, associations in several states
    _sctp(socket.AF_INET, 10, 0, 128, 9899, 0, "10.0.0.1"),
    _sctp(socket.AF_INET, 3, 1200, 0, 9899, 40001, "10.0.0.1", "10.0.0.2"),
    _sctp(socket.AF_INET, 3, 0, 300, 9899, 40002, "10.0.0.1", "10.0.0.3"),
    _sctp(socket.AF_INET, 3, 0, 0, 9899, 40003, "10.0.0.1", "10.0.0.4"),
    _sctp(socket.AF_INET, 1, 0, 0, 40100, 9899, "10.0.0.1", "10.0.0.9"),  # cookie_wait
    _sctp(socket.AF_INET6, 10, 0, 64, 3868, 0, "2001:db8::1"),
    _sctp(socket.AF_INET6, 3, 0, 0, 3868, 50000, "2001:db8::1", "2001:db8::2"),
    # DCCP: a listener with a queue, connections, a request (SYN_RECV: inet_req_diag_fill's state), one time_wait
    _inet(socket.AF_INET, DCCP, 10, 2, 5, 5004, 0, "0.0.0.0"),
    _inet(socket.AF_INET, DCCP, 1, 100, 0, 5004, 33000, "192.0.2.1", "192.0.2.7"),
    _inet(socket.AF_INET, DCCP, 1, 0, 2000, 5004, 33001, "192.0.2.1", "192.0.2.8"),
    _inet(socket.AF_INET, DCCP, 3, 0, 0, 5004, 33003, "192.0.2.1", "192.0.2.10", timer=1),
    _inet(socket.AF_INET, DCCP, 6, 0, 0, 5004, 33002, "192.0.2.1", "192.0.2.9", timer=3),
    # raw through raw_diag (kernels with CONFIG_INET_RAW_DIAG)
    _inet(socket.AF_INET, RAW, 7, 2304, 0, 1, 0),  # an ICMP socket with a queued echo: sport = protocol
    _inet(socket.AF_INET, RAW, 7, 0, 0, 255, 0),
    _inet(socket.AF_INET6, RAW, 7, 0, 768, 58, 0),
    # vsock: a listener, connections, a datagram socket
    ((AF_VSOCK, 0, 10), dm.vsock_diag_msg(socket.SOCK_STREAM, 10, src_port=1024)),
    ((AF_VSOCK, 0, 1), dm.vsock_diag_msg(socket.SOCK_STREAM, 1, src_port=1024, dst_cid=3, dst_port=5000)),
    ((AF_VSOCK, 0, 1), dm.vsock_diag_msg(socket.SOCK_STREAM, 1, shutdown=1, src_port=1024, dst_cid=4)),
    ((AF_VSOCK, 0, 7), dm.vsock_diag_msg(socket.SOCK_DGRAM, 7, src_port=2000)),
    # AF_XDP sockets have no state
    ((AF_XDP, 0, 0), dm.xdp_diag_msg(socket.SOCK_RAW, inode=11)),
    ((AF_XDP, 0, 0), dm.xdp_diag_msg(socket.SOCK_RAW, inode=12)),
    # TIPC: rdm and stream sockets (states: TIPC_OPEN = 7, TIPC_LISTEN = 10, TIPC_ESTABLISHED = 1)
    ((AF_TIPC, 0, 7), dm.tipc_sock(socket.SOCK_RDM, 7, inode=21)),
    ((AF_TIPC, 0, 7), dm.tipc_sock(socket.SOCK_RDM, 7, inode=22)),
    ((AF_TIPC, 0, 10), dm.tipc_sock(socket.SOCK_STREAM, 10, inode=23)),
    ((AF_TIPC, 0, 1), dm.tipc_sock(socket.SOCK_STREAM, 1, inode=24)),
    ((AF_TIPC, 0, 1), dm.tipc_sock(socket.SOCK_STREAM, 1, inode=25)),
    # SMC over IPv4 and IPv6 in one dump (smc_diag_dump walks both protocols)
    ((AF_SMC, 0, 10), dm.smc_diag_msg(AF_SMC, 10, 443)),
    ((AF_SMC, 0, 1), dm.smc_diag_msg(AF_SMC, 1, 443, 50001)),
    ((AF_SMC, 0, 1), dm.smc_diag_msg(AF_SMC, 1, 443, 50002)),
    ((AF_SMC, 0, 2), dm.smc_diag_msg(AF_SMC, 2, 50003, 443)),
]


# SK_MEMINFO of the inet sockets that have one to show when a request asks (idiag_ext), by (family, protocol,
# state): rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem, backlog, drops
MEMINFO = {
    (socket.AF_INET, DCCP, 10): (0, 131072, 0, 16384, 0, 0, 0, 0, 4),  # the listener dropped 4 requests
    (socket.AF_INET, SCTP, 10): (0, 212992, 0, 212992, 0, 0, 0, 0, 0),
    (socket.AF_INET6, SCTP, 10): (0, 212992, 0, 212992, 0, 0, 0, 0, 1),
}
INET_DIAG_SKMEMINFO = 7


def parse_request(request: bytes) -> Tuple[int, int, int, bool]:
    """(family, protocol, states, SK_MEMINFO asked) of a dump request, as the kernel's sock_diag_rcv_msg and
    handlers read it."""
    family = request[0]
    if family in (socket.AF_INET, socket.AF_INET6):  # struct inet_diag_req_v2, then maybe INET_DIAG_REQ_PROTOCOL
        protocol, states = request[1], struct.unpack_from("=I", request, 4)[0]
        if len(request) >= 64 and struct.unpack_from("=HH", request, 56)[1] == INET_DIAG_REQ_PROTOCOL:
            protocol = struct.unpack_from("=I", request, 60)[0]
        return family, protocol, states, bool(request[2] & 1 << (INET_DIAG_SKMEMINFO - 1))
    if family in (AF_VSOCK, AF_TIPC):  # vsock_diag_req / tipc_sock_diag_req: states at offset 4
        return family, 0, struct.unpack_from("=I", request, 4)[0], False
    return family, 0, 0xFFFFFFFF, False  # xdp and smc dumps have no state filter


class SyntheticKernel:
    """Answers with the SOCKETS of the requested family, protocol and states; refuses families and protocols in
    missing the way a kernel without their handler does."""

    def __init__(self, sockets=SOCKETS, missing: Optional[set] = None):
        self.sockets = sockets
        self.missing = missing or set()

    def answer(self, request: bytes) -> List[bytes]:
        family, protocol, states, memory = parse_request(request)
        present = {(f, p) for (f, p, _), _ in self.sockets}
        if (family, protocol) in self.missing or family not in {f for f, _ in present}:
            # no handler for the family: NLMSG_ERROR; for an inet protocol the dump "succeeds" with -ENOENT in DONE
            if family in (socket.AF_INET, socket.AF_INET6):
                return [dm.done(0, -errno.ENOENT)]
            return [dm.error(0, -errno.ENOENT)]
        if (family, protocol) not in present:
            return [dm.done(0, -errno.ENOENT)]
        replies = [dm.nlmsg(payload + (dm.attr(INET_DIAG_SKMEMINFO, dm.meminfo(MEMINFO.get((f, p, state), (0,) * 9)))
                                       if memory else b""), 0)
                   for (f, p, state), payload in self.sockets if f == family and p == protocol and states & (1 << state)]
        half = len(replies) // 2  # two receive buffers, as a real dump comes in several
        return [buf for buf in (b"".join(replies[:half]), b"".join(replies[half:]) + dm.done(0)) if buf]

    def connect(self, receive_buffer=0, timeout=0.0):
        from golden.replay import ReplaySocket

        return ReplaySocket(self.answer)


def proc_files() -> Dict[str, str]:
    """/proc/net files of this make-believe host: the counters, and raw sockets for the procfs fallback."""
    raw = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref "
           "pointer drops\n"
           "   1: 00000000:0001 00000000:0000 07 00000000:00000900 00:00000000 00000000     0        0 7001 2 "
           "0000000000000000 0\n")
    return {
        "snmp": "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti "
                "MemErrors\nUdp: 10 0 3 10 2 0 0 0 0\n"
                "UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors "
                "IgnoredMulti MemErrors\nUdpLite: 0 0 0 0 0 0 0 0 0\n",
        "snmp6": "Udp6InDatagrams                 5\nUdp6InErrors                    1\nUdp6RcvbufErrors                1\n",
        "netstat": "TcpExt: ListenOverflows ListenDrops\nTcpExt: 7 9\n",
        "raw": raw,
        "raw6": raw.splitlines()[0] + "\n",
    }
