"""Fuzz targets shared by the CI smoke test (test_fuzz.py, hypothesis) and the long run (fuzz_atheris.py).

Only the diag layer's own DiagError may escape a target: any other exception, a hang or a crash is a bug. The
destroy-event decoder lets nothing escape at all: a background thread runs it, and what it cannot read it counts.
"""

import struct

from sockdiag_exporter.diag import constants as c
from sockdiag_exporter.diag import requests
from sockdiag_exporter.diag.decoder import RecordDecoder, counting_decoder
from sockdiag_exporter.diag.errors import DiagError
from sockdiag_exporter.diag.flows import FlowDecoder
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


def events_target(choice: int, data: bytes) -> None:
    """data as destroy-event datagrams: one, or cut into recvmmsg slots at choice's boundaries; the tally must still
    count every message it walked."""
    decoder = FlowDecoder((100, 10000) if choice & 1 else (), DETAILS[1].port_groups if choice & 2 else None)
    decoder.listen([(0, 80), (1, 443)])
    if choice & 4:
        decoder.feed(memoryview(bytearray(data) + bytes(64)), 0, len(data))
    else:
        slot = 16 + (choice >> 3) % 1024
        count = max(1, -(-len(data) // slot))
        backing = bytearray(data) + bytes(count * slot - len(data))
        decoder.feed_slots(memoryview(backing), count, slot, [min(slot, len(data) - i * slot) for i in range(count)])
    tally = decoder.tally
    assert tally.malformed <= tally.events and tally.ignored <= tally.events


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


def event_seeds() -> list:
    """A TCP destroy event as this kernel sends it (380 bytes) and a UDP one (96), to start mutating from."""
    head = struct.pack("=BBBB", 2, 7, 0, 0) + struct.pack("!HH", 40000, 80) + bytes(64)
    protocol = struct.pack("=HHB3x", 5, c.INET_DIAG_PROTOCOL, 6)
    info = bytearray(280)
    struct.pack_into("=I", info, 60, 65535)  # tcpi_pmtu
    struct.pack_into("=Q", info, 120, 102)  # tcpi_bytes_acked
    tcp = nlmsg(20, 0, head + protocol + struct.pack("=HH", 284, c.INET_DIAG_INFO) + bytes(info), seq=0)
    udp = nlmsg(20, 0, head + struct.pack("=HHB3x", 5, c.INET_DIAG_PROTOCOL, 17), seq=0)
    return [tcp, udp, tcp + udp]


def seeds() -> list:
    """Valid replies for every layout to start mutating from."""
    inet = struct.pack("=BBBB", 2, 1, 0, 0) + struct.pack("!HH", 80, 5432) + bytes(44) + struct.pack("=5I", 0, 7, 9,
                                                                                                      0, 0)
    attr = struct.pack("=HH", 12, c.UNIX_DIAG_RQLEN) + struct.pack("=II", 3, 4)
    unix = struct.pack("=BBBBIII", 1, 1, 10, 0, 5, 0, 0) + attr + struct.pack("=HH", 7, 0) + b"@ab\0"
    done = nlmsg(c.NLMSG_DONE, c.NLM_F_MULTI, struct.pack("=i", 0))
    return [nlmsg(20, c.NLM_F_MULTI, inet) * 40 + done, nlmsg(20, c.NLM_F_MULTI, unix) * 3 + done,
            nlmsg(c.NLMSG_ERROR, 0, struct.pack("=i", -2) + bytes(16))]
