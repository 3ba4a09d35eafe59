"""/proc/net fallbacks for protocols whose sock_diag handler is missing, parsed the way ss parses them."""

import os
from bisect import bisect_left

from .decoder import Tally
from .errors import DiagMalformed, from_errno
from .requests import INET_LAYOUT


def proc_net_path(name: str) -> str:
    """/proc/thread-self/net/<name>: the calling thread's network namespace (setns is per thread)."""
    if os.path.isdir("/proc/thread-self/net"):
        return f"/proc/thread-self/net/{name}"
    return f"/proc/net/{name}"


def parse_inet_table(lines, what: str, bounds=()) -> Tally:
    """Tally a /proc/net/{raw,raw6,udp,...} table: key = st, values = rx_queue, tx_queue (as in inet_diag_msg),
    with queue histograms over bounds as the decoder makes them."""
    tally = Tally(INET_LAYOUT.nvalues)
    for number, line in enumerate(lines):
        if number == 0 or not line.strip():
            continue  # the header
        fields = line.split()
        try:
            state = int(fields[3], 16)
            tx_queue, rx_queue = (int(v, 16) for v in fields[4].split(":"))
        except (IndexError, ValueError):
            raise DiagMalformed(f"{what}: cannot parse line {number + 1}: {line.strip()[:80]!r}") from None
        if not 0 <= state <= 0xFF:
            raise DiagMalformed(f"{what}: state {state} out of range on line {number + 1}")
        row = tally.row(state)
        row[0] += 1
        row[1] += rx_queue
        row[2] += tx_queue
        if bounds:
            hist = tally.hist.setdefault(state, [[0] * (len(bounds) + 1), [0] * (len(bounds) + 1)])
            hist[0][bisect_left(bounds, rx_queue)] += 1
            hist[1][bisect_left(bounds, tx_queue)] += 1
    return tally


def read_inet_table(name: str, bounds=()) -> Tally:
    """Read and tally /proc/net/<name> of the calling thread's namespace."""
    path = proc_net_path(name)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return parse_inet_table(f, path, bounds)
    except OSError as e:
        raise from_errno(e.errno, f"reading {path}") from None
