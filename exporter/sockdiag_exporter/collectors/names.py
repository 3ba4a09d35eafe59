"""Readable label values for kernel numbers: socket types, states, netlink protocols, ethertypes."""

from ..diag import constants as c

SOCKET_TYPES = {
    c.SOCK_STREAM: "stream",
    c.SOCK_DGRAM: "dgram",
    c.SOCK_RAW: "raw",
    c.SOCK_RDM: "rdm",
    c.SOCK_SEQPACKET: "seqpacket",
}

# sk_state of connection-oriented protocols that run the TCP state machine (tcp, mptcp, dccp).
TCP_STATES = {
    c.TCP_ESTABLISHED: "established",
    c.TCP_SYN_SENT: "syn_sent",
    c.TCP_SYN_RECV: "syn_recv",
    c.TCP_FIN_WAIT1: "fin_wait1",
    c.TCP_FIN_WAIT2: "fin_wait2",
    c.TCP_TIME_WAIT: "time_wait",
    c.TCP_CLOSE: "close",
    c.TCP_CLOSE_WAIT: "close_wait",
    c.TCP_LAST_ACK: "last_ack",
    c.TCP_LISTEN: "listen",
    c.TCP_CLOSING: "closing",
    c.TCP_NEW_SYN_RECV: "new_syn_recv",
}

# States sock_diag never reports: request sockets (TCP_NEW_SYN_RECV) come as syn_recv (inet_diag's req sockets
# fill idiag_state with TCP_SYN_RECV), so a new_syn_recv series would always be zero (the full profile keeps it).
NEVER_REPORTED = frozenset({"new_syn_recv"})

# Other families reuse the TCP numbers; TCP_CLOSE means "not connected" there (ss shows UNCONN).
# Datagram protocols only ever report these two.
DGRAM_STATES = {c.TCP_ESTABLISHED: "established", c.TCP_CLOSE: "unconnected"}

# Unix sockets: listen (stream/seqpacket), established (connected) or unconnected.
UNIX_STATES = {
    c.SOCK_STREAM: {c.TCP_LISTEN: "listen", c.TCP_ESTABLISHED: "established", c.TCP_CLOSE: "unconnected"},
    c.SOCK_SEQPACKET: {c.TCP_LISTEN: "listen", c.TCP_ESTABLISHED: "established", c.TCP_CLOSE: "unconnected"},
    c.SOCK_DGRAM: DGRAM_STATES,
}

# vsock: af_vsock.c uses these TCP numbers
VSOCK_STATES = {
    c.TCP_ESTABLISHED: "established",
    c.TCP_SYN_SENT: "syn_sent",
    c.TCP_CLOSE: "unconnected",
    c.TCP_LISTEN: "listen",
    c.TCP_CLOSING: "closing",
}

# TIPC: enum in net/tipc/socket.c, aliased to TCP numbers
TIPC_STATES = {
    c.TCP_ESTABLISHED: "established",
    c.TCP_SYN_SENT: "connecting",
    c.TCP_CLOSE: "unconnected",
    c.TCP_CLOSE_WAIT: "disconnecting",
    c.TCP_LISTEN: "listen",
}

# SCTP associations report enum sctp_state; listening endpoints report TCP_LISTEN.
SCTP_STATES = {
    0: "closed",
    1: "cookie_wait",
    2: "cookie_echoed",
    3: "established",
    4: "shutdown_pending",
    5: "shutdown_sent",
    6: "shutdown_received",
    7: "shutdown_ack_sent",
    c.TCP_LISTEN: "listen",
}

# net/smc/smc.h enum smc_state
SMC_STATES = {
    1: "active",
    2: "init",
    7: "closed",
    10: "listen",
    20: "peer_close_wait1",
    21: "peer_close_wait2",
    22: "app_close_wait1",
    23: "app_close_wait2",
    24: "app_fin_close_wait",
    25: "peer_fin_close_wait",
    26: "peer_abort_wait",
    27: "process_abort",
}

# A netlink socket starts in TCP_CLOSE, becomes NETLINK_CONNECTED (1) on connect(), NETLINK_UNCONNECTED (0) after.
NETLINK_STATES = {c.TCP_CLOSE: "unconnected", c.NETLINK_UNCONNECTED: "unconnected", c.NETLINK_CONNECTED: "connected"}

# linux/netlink.h protocol numbers
NETLINK_PROTOCOLS = {
    0: "route",
    1: "unused",
    2: "usersock",
    3: "firewall",
    4: "sock_diag",
    5: "nflog",
    6: "xfrm",
    7: "selinux",
    8: "iscsi",
    9: "audit",
    10: "fib_lookup",
    11: "connector",
    12: "netfilter",
    13: "ip6_fw",
    14: "dnrtmsg",
    15: "kobject_uevent",
    16: "generic",
    18: "scsitransport",
    19: "ecryptfs",
    20: "rdma",
    21: "crypto",
    22: "smc",
}

# linux/if_ether.h, for packet sockets' protocol (pdiag_num, host byte order)
ETHERTYPES = {
    0x0000: "none",
    0x0003: "all",
    0x0800: "ip",
    0x0806: "arp",
    0x8035: "rarp",
    0x8100: "8021q",
    0x86DD: "ipv6",
    0x8847: "mpls_uc",
    0x8848: "mpls_mc",
    0x8863: "pppoe_disc",
    0x8864: "pppoe_ses",
    0x888E: "pae",
    0x88A8: "8021ad",
    0x88CC: "lldp",
    0x88F7: "1588",
}


# diag.flows numbers: family index, direction, outcome
FLOW_FAMILIES = ("inet", "inet6")
FLOW_DIRECTIONS = ("outbound", "inbound")
FLOW_OUTCOMES = ("completed", "reset", "timeout", "refused", "unanswered")


def state_name(table: dict, state: int) -> str:
    """The readable name of a state; numbers the table does not know become state_<n> (still bounded: a byte)."""
    return table.get(state) or f"state_{state}"


def socket_type_name(sock_type: int) -> str:
    return SOCKET_TYPES.get(sock_type) or f"type_{sock_type}"


def netlink_protocol_name(protocol: int) -> str:
    return NETLINK_PROTOCOLS.get(protocol) or f"netlink_{protocol}"


def ethertype_name(ethertype: int) -> str:
    return ETHERTYPES.get(ethertype) or f"0x{ethertype:04x}"
