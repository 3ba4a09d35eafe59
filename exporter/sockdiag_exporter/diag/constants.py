"""Kernel constants for sock_diag, named as in the uapi headers (linux/netlink.h, linux/*diag.h)."""

# linux/netlink.h
NETLINK_SOCK_DIAG = 4
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLMSG_HDRLEN = 16
NLA_HDRLEN = 4
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

# linux/sock_diag.h
SOCK_DIAG_BY_FAMILY = 20
# destroy multicast groups (enum sknetlink_groups): one inet_diag_msg each time a full socket of the subscriber's
# network namespace is freed
SKNLGRP_INET_TCP_DESTROY = 1
SKNLGRP_INET_UDP_DESTROY = 2
SKNLGRP_INET6_TCP_DESTROY = 3
SKNLGRP_INET6_UDP_DESTROY = 4
SOL_NETLINK = 270  # linux/socket.h
NETLINK_ADD_MEMBERSHIP = 1  # linux/netlink.h

# address families (linux/socket.h)
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
AF_PACKET = 17
AF_TIPC = 30
AF_VSOCK = 40
AF_SMC = 43
AF_XDP = 44

# socket types (linux/net.h)
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
SOCK_RDM = 4
SOCK_SEQPACKET = 5

# IP protocols (linux/in.h)
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_DCCP = 33
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136
IPPROTO_RAW = 255
IPPROTO_MPTCP = 262

# TCP states (include/net/tcp_states.h); every sk_state in sock_diag uses these numbers
TCP_ESTABLISHED = 1
TCP_SYN_SENT = 2
TCP_SYN_RECV = 3
TCP_FIN_WAIT1 = 4
TCP_FIN_WAIT2 = 5
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_LAST_ACK = 9
TCP_LISTEN = 10
TCP_CLOSING = 11
TCP_NEW_SYN_RECV = 12

# linux/inet_diag.h
INET_DIAG_REQ_PROTOCOL = 3
INET_DIAG_INFO = 2  # struct tcp_info for tcp sockets (in dumps when asked, in every tcp destroy event)
INET_DIAG_PROTOCOL = 10  # u8: the socket's protocol (destroy events carry it)
INET_DIAG_SKMEMINFO = 7
INET_DIAG_CGROUP_ID = 21  # u64, kernel >= 5.7: the socket's cgroup v2 id
INET_DIAG_MSG_SIZE = 72  # struct inet_diag_msg

# linux/unix_diag.h
UDIAG_SHOW_NAME = 0x01
UDIAG_SHOW_RQLEN = 0x10
UDIAG_SHOW_MEMINFO = 0x20
UNIX_DIAG_NAME = 0
UNIX_DIAG_RQLEN = 4
UNIX_DIAG_MEMINFO = 5
UNIX_DIAG_MSG_SIZE = 16

# linux/netlink_diag.h
NDIAG_PROTO_ALL = 0xFF
NDIAG_SHOW_MEMINFO = 0x01
NETLINK_DIAG_MEMINFO = 0
NETLINK_DIAG_MSG_SIZE = 28
NETLINK_UNCONNECTED = 0
NETLINK_CONNECTED = 1

# linux/packet_diag.h
PACKET_SHOW_MEMINFO = 0x10
PACKET_DIAG_MEMINFO = 6
PACKET_DIAG_MSG_SIZE = 16

# linux/sock_diag.h: indices of the u32 array in *_DIAG_MEMINFO / INET_DIAG_SKMEMINFO
SK_MEMINFO_RMEM_ALLOC = 0
SK_MEMINFO_WMEM_ALLOC = 2
SK_MEMINFO_VARS = 9  # rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem, backlog, drops

# linux/vm_sockets_diag.h, linux/xdp_diag.h, linux/smc_diag.h, linux/tipc_sockets_diag.h
VSOCK_DIAG_MSG_SIZE = 32
XDP_DIAG_MSG_SIZE = 16
SMC_DIAG_MSG_SIZE = 64
TIPC_DIAG_MSG_SIZE = 0  # a TIPC reply is attributes only
TIPC_NLA_SOCK = 2  # linux/tipc_netlink.h: nested socket attributes
TIPC_NLA_SOCK_TYPE = 6
TIPC_NLA_SOCK_TIPC_STATE = 9
