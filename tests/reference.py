"""A deliberately naive sock_diag decoder: the oracle the exporter's decoder is checked against.

Written from the kernel's uapi structs (see diagmsg.py), not from the exporter: every message is unpacked whole
with one struct format per family, attributes are walked one by one into a dict, and every tally is a plain dict
keyed by named fields. No runs, no lookup tables, no tricks. Slow and obviously right.
"""

import re
import socket
import struct
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

NLMSG_ERROR, NLMSG_DONE, SOCK_DIAG_BY_FAMILY = 2, 3, 20
NLM_F_DUMP_INTR = 0x10
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

# family -> (struct format of the fixed reply struct, field names, key field names)
STRUCTS = {
    "inet": ("=BBBBHH16s16sIQIIIII", ("family", "state", "timer", "retrans", "sport", "dport", "src", "dst", "ifindex",
                                       "cookie", "expires", "rqueue", "wqueue", "uid", "inode"), ("state",)),
    "unix": ("=BBBBIQ", ("family", "type", "state", "pad", "inode", "cookie"), ("type", "state")),
    "netlink": ("=BBBBIIIIQ", ("family", "type", "protocol", "state", "portid", "dst_portid", "dst_group", "inode",
                               "cookie"), ("type", "protocol", "state")),
    "packet": ("=BBHIQ", ("family", "type", "protocol", "inode", "cookie"), ("type", "protocol")),
    "vsock": ("=BBBBIIIIIQ", ("family", "type", "state", "shutdown", "src_cid", "src_port", "dst_cid", "dst_port",
                              "inode", "cookie"), ("type", "state")),
    "xdp": ("=BBHIQ", ("family", "type", "pad", "inode", "cookie"), ("type",)),
    "smc": ("=BBBB48xIQ", ("family", "state", "mode", "shutdown", "uid", "inode"), ("state",)),
    "tipc": ("=", (), ("type", "state")),
}
MEMINFO_ATTR = {"inet": 7, "unix": 5, "netlink": 0, "packet": 6}
TIPC_NLA_SOCK, TIPC_NLA_SOCK_TYPE, TIPC_NLA_SOCK_TIPC_STATE = 2, 6, 9
UNIX_DIAG_NAME, UNIX_DIAG_RQLEN = 0, 4
INET_DIAG_CGROUP_ID = 21
# inet_twsk_diag_fill: a TIME_WAIT minisocket reports idiag_timer 3 and its substate, TIME_WAIT or FIN_WAIT2
TIME_WAIT_TIMER, TCP_FIN_WAIT2, TCP_TIME_WAIT = 3, 5, 6


class Request(NamedTuple):
    """What the dump asked for, as the reference needs to know it."""

    family: str  # a key of STRUCTS
    memory: bool = False  # SK_MEMINFO values follow the queues
    bounds: Tuple[int, ...] = ()  # histogram bucket bounds
    port_groups: Sequence[Tuple[frozenset, frozenset]] = ()  # (local ports, remote ports) per group
    cgroups: bool = False  # tally by INET_DIAG_CGROUP_ID
    timewait: bool = True  # inet: count the messages on the TIME_WAIT timer (not sctp: its timers are its own)
    ephemeral: Optional[frozenset] = None  # inet: local ports whose sockets are counted per remote endpoint
    local_state: int = -1  # inet: sockets in this state are also tallied per local endpoint...
    local_ports: Optional[frozenset] = None  # ... those on these local ports only (None: all)


class Result(NamedTuple):
    rows: Dict[tuple, List[int]]  # key fields -> [count, value sums...]
    hist: Dict[tuple, List[List[int]]]  # key fields -> [receive queue buckets, send queue buckets]
    groups: Dict[Tuple[int, tuple], List[int]]  # (group index, key fields) -> [count, receive, send]
    cgroups: Dict[Tuple[int, tuple], List[int]]  # (cgroup id, key fields) -> [count, receive, send]
    minisockets: Dict[tuple, int]  # key fields -> messages on the TIME_WAIT timer
    remotes: Dict[Tuple[bytes, bytes, int], int]  # (local address, remote address, remote port) -> sockets
    locals: Dict[Tuple[bytes, int, int], List[int]]  # (local address, local port, device) -> [count, value sums...]
    records: list  # parsed messages (for the record decoders)
    interrupted: bool


class DumpError(Exception):
    """The dump ended with an error (a negative errno in NLMSG_DONE or NLMSG_ERROR)."""


def attributes(data: bytes) -> Dict[int, bytes]:
    found = {}
    while len(data) >= 4:
        length, atype = struct.unpack_from("=HH", data)
        if length < 4:
            raise ValueError(f"attribute length {length}")  # the generator never makes one
        found[atype & NLA_TYPE_MASK] = data[4:length]
        data = data[(length + 3) & ~3:]
    return found


def messages(buffers: Sequence[bytes], seq: int):
    """(type, flags, payload) of every message of this dump up to and including its NLMSG_DONE."""
    for buf in buffers:
        while buf:
            length, mtype, flags, msg_seq, _pid = struct.unpack_from("=IHHII", buf)
            payload, buf = buf[16:length], buf[(length + 3) & ~3:]
            if msg_seq != seq:
                continue
            yield mtype, flags, payload
            if mtype == NLMSG_DONE:
                return


def u32s(data: Optional[bytes], count: int) -> List[int]:
    """count u32 values; those the data is too short for (or all, without data) are 0."""
    data = data or b""
    return [struct.unpack_from("=I", data, 4 * i)[0] if len(data) >= 4 * (i + 1) else 0 for i in range(count)]


def parse(family: str, payload: bytes) -> dict:
    """Every field of the fixed struct by name, plus "attrs": attribute type -> payload bytes."""
    fmt, names, _ = STRUCTS[family]
    size = struct.calcsize(fmt)
    fields = dict(zip(names, struct.unpack_from(fmt, payload))) if names else {}
    fields["attrs"] = attributes(payload[(size + 3) & ~3:])
    if family == "tipc":
        inner = attributes(fields["attrs"].get(TIPC_NLA_SOCK, b""))
        fields["type"] = u32s(inner.get(TIPC_NLA_SOCK_TYPE), 1)[0] & 0xFF
        fields["state"] = u32s(inner.get(TIPC_NLA_SOCK_TIPC_STATE), 1)[0] & 0xFF
    if family in ("inet", "smc") and "sport" in fields:
        fields["sport"], fields["dport"] = socket.ntohs(fields["sport"]), socket.ntohs(fields["dport"])
    return fields


def values(request: Request, msg: dict) -> List[int]:
    """The values the exporter sums: receive and send queue, then the SK_MEMINFO values when asked."""
    attrs, family = msg["attrs"], request.family
    if family == "inet":
        queues = [msg["rqueue"], msg["wqueue"]]
    elif family == "unix":
        queues = u32s(attrs.get(UNIX_DIAG_RQLEN), 2)
    elif family in ("netlink", "packet"):
        mem = u32s(attrs.get(MEMINFO_ATTR[family]), 9)
        queues = [mem[0], mem[2]]  # rmem_alloc, wmem_alloc: what ss shows as Recv-Q and Send-Q
    else:
        return []  # vsock, xdp, smc, tipc: counts only
    if request.memory:
        queues += u32s(attrs.get(MEMINFO_ATTR[family]), 9)
    return queues


def bucket(bounds: Sequence[int], value: int) -> int:
    """The histogram bucket of value: the first bound >= value (le semantics); past the last, +Inf."""
    for i, bound in enumerate(bounds):
        if value <= bound:
            return i
    return len(bounds)


def decode(request: Request, buffers: Sequence[bytes], seq: int) -> Result:
    result = Result({}, {}, {}, {}, {}, {}, {}, [], False)
    interrupted = False
    key_names = STRUCTS[request.family][2]
    for mtype, flags, payload in messages(buffers, seq):
        if flags & NLM_F_DUMP_INTR:
            interrupted = True
        if mtype in (NLMSG_DONE, NLMSG_ERROR):
            err = struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else 0
            if err < 0:
                raise DumpError(-err)
            continue
        if mtype != SOCK_DIAG_BY_FAMILY:
            continue
        msg = parse(request.family, payload)
        result.records.append(msg)
        key = tuple(msg[name] for name in key_names)
        vals = values(request, msg)
        row = result.rows.setdefault(key, [0] * (1 + len(vals)))
        row[0] += 1
        for i, v in enumerate(vals):
            row[1 + i] += v
        if request.bounds and len(vals) >= 2:
            hist = result.hist.setdefault(key, [[0] * (len(request.bounds) + 1) for _ in range(2)])
            for i in range(2):
                hist[i][bucket(request.bounds, vals[i])] += 1
        for index, (local, remote) in enumerate(request.port_groups):
            if msg["sport"] in local or msg["dport"] in remote:
                group = result.groups.setdefault((index, key), [0, 0, 0])
                group[0] += 1
                group[1] += vals[0]
                group[2] += vals[1]
        if request.cgroups:
            raw = msg["attrs"].get(INET_DIAG_CGROUP_ID, b"")
            cgroup = struct.unpack_from("=Q", raw)[0] if len(raw) >= 8 else 0
            row = result.cgroups.setdefault((cgroup, key), [0, 0, 0])
            row[0] += 1
            row[1] += vals[0]
            row[2] += vals[1]
        if request.family == "inet":
            endpoints(request, msg, key, vals, result)
    return result._replace(interrupted=interrupted)


def endpoints(request: Request, msg: dict, key: tuple, vals: List[int], result: Result) -> None:
    """The inet tallies by socket: minisockets, remote endpoints of ephemeral ports, local endpoints of a state."""
    if request.timewait and msg["timer"] == TIME_WAIT_TIMER and msg["state"] in (TCP_FIN_WAIT2, TCP_TIME_WAIT):
        result.minisockets[key] = result.minisockets.get(key, 0) + 1
    if request.ephemeral is not None and msg["sport"] in request.ephemeral:
        remote = (msg["src"], msg["dst"], msg["dport"])
        result.remotes[remote] = result.remotes.get(remote, 0) + 1
    if msg["state"] == request.local_state and (request.local_ports is None or msg["sport"] in request.local_ports):
        row = result.locals.setdefault((msg["src"], msg["sport"], msg["ifindex"]), [0] * (1 + len(vals)))
        row[0] += 1
        for i, v in enumerate(vals):
            row[1 + i] += v


# --- the records the exporter keeps one by one (listeners) ---

def inet_listener(msg: dict) -> tuple:
    """(address text, port, ifindex, accept queue length, limit, SK_MEMINFO values or (), cgroup id)."""
    if msg["family"] == socket.AF_INET6:
        address = f"[{socket.inet_ntop(socket.AF_INET6, msg['src'])}]:{msg['sport']}"
    else:
        address = f"{socket.inet_ntop(socket.AF_INET, msg['src'][:4])}:{msg['sport']}"
    attrs = msg["attrs"]
    memory = tuple(u32s(attrs[7], 9)) if 7 in attrs else ()
    raw = attrs.get(INET_DIAG_CGROUP_ID, b"")
    cgroup = struct.unpack_from("=Q", raw)[0] if len(raw) >= 8 else 0
    return address, msg["sport"], msg["ifindex"], msg["rqueue"], msg["wqueue"], memory, cgroup


def unix_listener(msg: dict) -> tuple:
    """(socket type, name: the path, @name for an abstract one, "" for none; accept queue length, limit)."""
    name = msg["attrs"].get(UNIX_DIAG_NAME, b"")
    if name[:1] == b"\0":
        text = "@" + name[1:].decode("utf-8", "backslashreplace")
    else:
        text = name.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
    length, limit = u32s(msg["attrs"].get(UNIX_DIAG_RQLEN), 2)
    return msg["type"], text, length, limit


# --- destroy events (flows) ---

TCP_INFO_FORMAT = "=8B24I4Q6I4Q2I2Q6I2H8I2H"  # struct tcp_info of a 6.18 kernel, 280 bytes (see diagmsg.py)
TCP_INFO_NAMES = (
    "state", "ca_state", "retransmits", "probes", "backoff", "options", "wscale", "flags", "rto", "ato", "snd_mss",
    "rcv_mss", "unacked", "sacked", "lost", "retrans", "fackets", "last_data_sent", "last_ack_sent",
    "last_data_recv", "last_ack_recv", "pmtu", "rcv_ssthresh", "rtt", "rttvar", "snd_ssthresh", "snd_cwnd",
    "advmss", "reordering", "rcv_rtt", "rcv_space", "total_retrans", "pacing_rate", "max_pacing_rate",
    "bytes_acked", "bytes_received", "segs_out", "segs_in", "notsent_bytes", "min_rtt", "data_segs_in",
    "data_segs_out", "delivery_rate", "busy_time", "rwnd_limited", "sndbuf_limited", "delivered", "delivered_ce",
    "bytes_sent", "bytes_retrans", "dsack_dups", "reord_seen", "rcv_ooopack", "snd_wnd", "rcv_wnd", "rehash",
    "total_rto", "total_rto_recoveries", "total_rto_time", "received_ce", "delivered_e1_bytes", "delivered_e0_bytes",
    "delivered_ce_bytes", "received_e1_bytes", "received_e0_bytes", "received_ce_bytes", "accecn_fail_mode",
    "accecn_opt_seen",
)
NO_SAMPLE = 0xFFFFFFFF
INET_DIAG_INFO, INET_DIAG_PROTOCOL = 2, 10
AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP = 2, 10, 6, 17


class Flows(NamedTuple):
    """What the events tell: (family, direction, outcome) -> [connections, bytes_acked, bytes_received, segs_out,
    segs_in, total_retrans, bytes_retrans]; (family, direction, outcome, local port) -> [connections, bytes_acked,
    bytes_received] of inbound ones; (port group index, family, direction, outcome) -> the same; RTT bucket counts
    and sums (microseconds) per direction; UDP sockets per family; messages, non-connections, unreadable ones."""

    rows: Dict[tuple, List[int]]
    listeners: Dict[tuple, List[int]]
    groups: Dict[tuple, List[int]]
    rtt: Dict[str, List[int]]
    rtt_sum: Dict[str, int]
    udp: Dict[str, int]
    events: int
    ignored: int
    malformed: int


def tcp_info(data: bytes) -> dict:
    """Every field the kernel sent whole; a field it did not (an older kernel's shorter struct) is absent: 0, and
    "no sample" for min_rtt."""
    values, codes = {}, expand(TCP_INFO_FORMAT)
    for i, name in enumerate(TCP_INFO_NAMES):
        offset, size = struct.calcsize("=" + codes[:i]), struct.calcsize("=" + codes[i])
        if offset + size <= len(data):
            values[name] = struct.unpack_from("=" + codes[i], data, offset)[0]
        else:
            values[name] = NO_SAMPLE if name == "min_rtt" else 0
    return values


def expand(fmt: str) -> str:
    """"=8B2I" -> "BBBBBBBBII": one letter per field."""
    return "".join(letter * int(count or 1) for count, letter in re.findall(r"(\d*)([A-Za-z])", fmt[1:]))


def outcome(msg: dict, info: dict) -> str:
    """README's rules, as written there."""
    established = (info["bytes_acked"] > 0 or info["bytes_received"] > 0 or info["snd_wnd"] > 0
                   or info["min_rtt"] != NO_SAMPLE)
    if established:
        if msg["dport"] == 0:
            return "reset"
        if info["retransmits"] > 0:
            return "timeout"
        if msg["rqueue"] >= 2:
            return "reset"
        return "completed"
    if msg["dport"] != 0:
        return "refused" if info["segs_in"] > 0 else "unanswered"
    return "unanswered" if info["retransmits"] > 0 else "refused"


def decode_events(datagrams: Sequence[bytes], listening: set, bounds: Sequence[int] = (),
                  port_groups: Sequence[Tuple[frozenset, frozenset]] = ()) -> Flows:
    """listening: {(family name, port)}; bounds: RTT buckets in microseconds."""
    result = Flows({}, {}, {}, {"outbound": [0] * (len(bounds) + 1), "inbound": [0] * (len(bounds) + 1)},
                   {"outbound": 0, "inbound": 0}, {"inet": 0, "inet6": 0}, 0, 0, 0)
    counts = {"events": 0, "ignored": 0, "malformed": 0}

    def add(table, key, values):
        row = table.setdefault(key, [0] * len(values))
        for i, v in enumerate(values):
            row[i] += v

    for data in datagrams:
        while len(data) >= 16:
            length, mtype = struct.unpack_from("=IH", data)
            counts["events"] += 1
            if length < 16 or length > len(data):
                counts["malformed"] += 1
                break
            payload, data = data[16:length], data[(length + 3) & ~3:]
            if mtype != SOCK_DIAG_BY_FAMILY:
                continue
            if len(payload) < 72:
                counts["malformed"] += 1
                continue
            msg = parse("inet", payload)
            family = {AF_INET: "inet", AF_INET6: "inet6"}.get(msg["family"])
            protocol = msg["attrs"].get(INET_DIAG_PROTOCOL, b"")
            if family is None or not protocol:
                counts["malformed"] += 1
                continue
            if protocol[0] == IPPROTO_UDP:
                result.udp[family] += 1
                continue
            if protocol[0] != IPPROTO_TCP:
                counts["ignored"] += 1
                continue
            info = tcp_info(msg["attrs"].get(INET_DIAG_INFO, b""))
            if info["pmtu"] == 0:
                counts["ignored"] += 1
                continue
            direction = "inbound" if (family, msg["sport"]) in listening else "outbound"
            kind = outcome(msg, info)
            add(result.rows, (family, direction, kind), [1, info["bytes_acked"], info["bytes_received"],
                                                         info["segs_out"], info["segs_in"], info["total_retrans"],
                                                         info["bytes_retrans"]])
            if kind in ("completed", "reset", "timeout") and info["rtt"]:
                result.rtt[direction][bucket(bounds, info["rtt"])] += 1
                result.rtt_sum[direction] += info["rtt"]
            volume = [1, info["bytes_acked"], info["bytes_received"]]
            if direction == "inbound":
                add(result.listeners, (family, direction, kind, msg["sport"]), volume)
            for index, (local, remote) in enumerate(port_groups):
                if msg["sport"] in local or msg["dport"] in remote:
                    add(result.groups, (index, family, direction, kind), volume)
    return result._replace(**counts)
