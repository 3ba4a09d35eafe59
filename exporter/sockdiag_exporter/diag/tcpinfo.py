"""struct tcp_info (linux/tcp.h): where each field sits, so that any decoder can read the fields it needs.

The kernel only ever appends to the struct, and sends as many bytes as it knows (INET_DIAG_INFO of a dump or a
destroy event, getsockopt(TCP_INFO)): 104 bytes on 2.6 kernels, 144 from 4.2, 160 from 4.6 (tcpi_min_rtt), 224
from 4.19 (tcpi_bytes_retrans), 232 from 5.4 (tcpi_snd_wnd), 280 on 6.18 (the fields listed here end at 248). A
field beyond what a kernel sent is absent: :func:`padded` gives it its neutral value (0, or "no sample" for
tcpi_min_rtt) instead.
"""

import struct
from bisect import bisect_right
from typing import Dict, Sequence, Tuple

# (name without the tcpi_ prefix, struct code) in the kernel's order; each field is naturally aligned, as in C.
# The bit fields tcpi_snd_wscale:4/tcpi_rcv_wscale:4 and tcpi_delivery_rate_app_limited:1/
# tcpi_fastopen_client_fail:2 share one byte each: "wscale" and "app_limited_flags".
FIELDS: Tuple[Tuple[str, str], ...] = (
    ("state", "B"), ("ca_state", "B"), ("retransmits", "B"), ("probes", "B"), ("backoff", "B"), ("options", "B"),
    ("wscale", "B"), ("app_limited_flags", "B"),
    ("rto", "I"), ("ato", "I"), ("snd_mss", "I"), ("rcv_mss", "I"),
    ("unacked", "I"), ("sacked", "I"), ("lost", "I"), ("retrans", "I"), ("fackets", "I"),
    ("last_data_sent", "I"), ("last_ack_sent", "I"), ("last_data_recv", "I"), ("last_ack_recv", "I"),
    ("pmtu", "I"), ("rcv_ssthresh", "I"), ("rtt", "I"), ("rttvar", "I"), ("snd_ssthresh", "I"), ("snd_cwnd", "I"),
    ("advmss", "I"), ("reordering", "I"), ("rcv_rtt", "I"), ("rcv_space", "I"), ("total_retrans", "I"),
    ("pacing_rate", "Q"), ("max_pacing_rate", "Q"), ("bytes_acked", "Q"), ("bytes_received", "Q"),
    ("segs_out", "I"), ("segs_in", "I"),
    ("notsent_bytes", "I"), ("min_rtt", "I"), ("data_segs_in", "I"), ("data_segs_out", "I"),
    ("delivery_rate", "Q"), ("busy_time", "Q"), ("rwnd_limited", "Q"), ("sndbuf_limited", "Q"),
    ("delivered", "I"), ("delivered_ce", "I"), ("bytes_sent", "Q"), ("bytes_retrans", "Q"),
    ("dsack_dups", "I"), ("reord_seen", "I"), ("rcv_ooopack", "I"), ("snd_wnd", "I"),
    ("rcv_wnd", "I"), ("rehash", "I"), ("total_rto", "H"), ("total_rto_recoveries", "H"), ("total_rto_time", "I"),
)


def _offsets() -> Dict[str, Tuple[int, str]]:
    found, at = {}, 0
    for name, code in FIELDS:
        size = struct.calcsize(code)
        at += -at % size  # natural alignment
        found[name] = (at, code)
        at += size
    return found


OFFSETS: Dict[str, Tuple[int, str]] = _offsets()  # name -> (offset, struct code)
SIZE = max(offset + struct.calcsize(code) for offset, code in OFFSETS.values())  # 248: newer kernels send more
NO_RTT_SAMPLE = 0xFFFFFFFF  # tcpi_min_rtt of a connection that never measured a round trip (~0U)
# Values a field takes when the kernel sent too short a struct to hold it.
ABSENT = {"min_rtt": NO_RTT_SAMPLE}


def _template() -> bytes:
    buf = bytearray(SIZE)
    for name, value in ABSENT.items():
        offset, code = OFFSETS[name]
        struct.pack_into("=" + code, buf, offset, value)
    return bytes(buf)


TEMPLATE = _template()


_ENDS = sorted({0} | {offset + struct.calcsize(code) for offset, code in OFFSETS.values()})


def padded(info: bytes) -> bytes:
    """A tcp_info of any length as SIZE bytes: the fields it lacks, or holds only part of, take their absent
    values."""
    whole = _ENDS[bisect_right(_ENDS, len(info)) - 1]
    return bytes(info[:whole]) + TEMPLATE[whole:]


def fields(names: Sequence[str], base: int = 0) -> Sequence[Tuple[int, str]]:
    """(offset, struct code) of the named fields in a struct tcp_info starting at offset base."""
    return [(base + OFFSETS[name][0], OFFSETS[name][1]) for name in names]

