"""Fuzz targets shared by the CI smoke test (test_fuzz.py, hypothesis) and the long run (fuzz_atheris.py).

Only the diag layer's own DiagError may escape a target: any other exception, a hang or a crash is a bug.
"""

import struct

from sockdiag_exporter.diag import constants as c
from sockdiag_exporter.diag import requests
from sockdiag_exporter.diag.decoder import RecordDecoder, counting_decoder
from sockdiag_exporter.diag.errors import DiagError
from sockdiag_exporter.diag.procfs import parse_inet_table, parse_pairs_table, parse_snmp6
from sockdiag_exporter.diag.tally import NO_DETAIL, Detail, port_table, port_tables

SEQ = 1
LAYOUTS = (requests.INET_LAYOUT, requests.INET_MEMORY_LAYOUT, requests.UNIX_LAYOUT, requests.UNIX_MEMORY_LAYOUT,
           requests.NETLINK_LAYOUT, requests.NETLINK_MEMORY_LAYOUT, requests.PACKET_LAYOUT,
           requests.PACKET_MEMORY_LAYOUT, requests.VSOCK_LAYOUT, requests.XDP_LAYOUT, requests.SMC_LAYOUT,
           requests.TIPC_LAYOUT, requests.SCTP_LAYOUT, requests.SCTP_MEMORY_LAYOUT)
DETAILS = (NO_DETAIL, Detail((0, 1024, 1 << 20), port_tables([((80, 443), (5432,)), ((1,), ())])),
           Detail((0, 4096), None, c.INET_DIAG_CGROUP_ID),
           Detail((0, 4096), port_tables([((80,), (80,))]), 0, port_table(low=1024, high=65535), c.TCP_SYN_RECV),
           Detail(ephemeral=port_table((80,)), local_state=c.TCP_CLOSE, local_ports=port_table(low=1, high=1023)))
EXTRACTORS = ((requests.INET_LAYOUT, requests.inet_listener), (requests.UNIX_LAYOUT, requests.unix_listener))


def feed(decoder, data: bytes) -> None:
    """One receive buffer of data (padded like the real, larger buffer), then any leftovers as a second one."""
    buf = bytearray(len(data) + (-len(data) % 4) + 128)
    buf[: len(data)] = data
    mv = memoryview(buf)
    decoder.feed(mv, mv.cast("I"), len(data))


def decoder_target(choice: int, data: bytes) -> None:
    """Decode data as a dump reply with the layout, detail and record extractor picked by choice."""
    try:
        if choice % 5 == 4:
            layout, extract = EXTRACTORS[(choice // 5) % len(EXTRACTORS)]
            feed(RecordDecoder(layout, SEQ, "fuzz", extract), data)
        else:
            layout = LAYOUTS[choice % len(LAYOUTS)]
            feed(counting_decoder(layout, SEQ, "fuzz", DETAILS[(choice // 7) % len(DETAILS)]), data)
    except DiagError:
        pass


def procfs_target(choice: int, text: str) -> None:
    """Parse text as /proc/net/raw (or udp ...), snmp/netstat, or snmp6."""
    try:
        [lambda: parse_inet_table(text, "fuzz", (0, 1024)),
         lambda: parse_pairs_table(text, "fuzz"),
         lambda: parse_snmp6(text, "fuzz")][choice % 3]()
    except DiagError:
        pass


def nlmsg(mtype: int, flags: int, payload: bytes, seq: int = SEQ) -> bytes:
    """A netlink message as the kernel lays it out (used to build fuzz seeds)."""
    length = c.NLMSG_HDRLEN + len(payload)
    return struct.pack("=IHHII", length, mtype, flags, seq, 0) + payload + bytes(-length % 4)


def seeds() -> list:
    """Valid replies for every layout to start mutating from."""
    inet = struct.pack("=BBBB", 2, 1, 0, 0) + struct.pack("!HH", 80, 5432) + bytes(44) + struct.pack("=5I", 0, 7, 9,
                                                                                                      0, 0)
    attr = struct.pack("=HH", 12, c.UNIX_DIAG_RQLEN) + struct.pack("=II", 3, 4)
    unix = struct.pack("=BBBBIII", 1, 1, 10, 0, 5, 0, 0) + attr + struct.pack("=HH", 7, 0) + b"@ab\0"
    done = nlmsg(c.NLMSG_DONE, c.NLM_F_MULTI, struct.pack("=i", 0))
    return [nlmsg(20, c.NLM_F_MULTI, inet) * 40 + done, nlmsg(20, c.NLM_F_MULTI, unix) * 3 + done,
            nlmsg(c.NLMSG_ERROR, 0, struct.pack("=i", -2) + bytes(16))]
