"""/proc/net files of the calling thread's network namespace: the fallback tables for protocols whose sock_diag
handler is missing (parsed the way ss parses them) and the monotonic protocol counters (snmp, snmp6, netstat); and
its network sysctls (/proc/sys/net: the ephemeral port range, the TIME_WAIT bucket limit)."""

import os
from bisect import bisect_left
from typing import Dict, FrozenSet, NamedTuple

from .errors import DiagMalformed, from_errno
from .requests import INET_LAYOUT
from .tally import Tally


class ProcNet:
    """Reads /proc/thread-self/net/<name>: the calling thread's network namespace (setns is per thread).
    Replay tests substitute an object with the same read()."""

    def __init__(self):
        self.root = "/proc/thread-self/net" if os.path.isdir("/proc/thread-self/net") else "/proc/net"

    def read(self, name: str) -> str:
        return _read(f"{self.root}/{name}")

    def sysctl(self, name: str) -> str:
        """/proc/sys/net/<name>: the kernel shows the network namespace of the thread that opens it."""
        return _read(f"/proc/sys/net/{name}")


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError as e:
        raise from_errno(e.errno, f"reading {path}") from None


def parse_inet_table(text: str, what: str, bounds=()) -> Tally:
    """Tally a /proc/net/{raw,raw6,udp,...} table like an inet dump: key = st, values = rx_queue, tx_queue,
    with queue histograms over bounds."""
    tally = Tally(INET_LAYOUT, tuple(bounds))
    for number, line in enumerate(text.splitlines()):
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
            tally.add_hist(state, 0, bisect_left(bounds, rx_queue))
            tally.add_hist(state, 1, bisect_left(bounds, tx_queue))
    return tally


def parse_pairs_table(text: str, what: str) -> Dict[str, int]:
    """'Prefix: names...' / 'Prefix: values...' line pairs (snmp, netstat) -> {"PrefixName": value}."""
    counters = {}
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for names, values in zip(lines[::2], lines[1::2]):
        if names[0] != values[0] or len(names) != len(values) or not names[0].endswith(":"):
            raise DiagMalformed(f"{what}: header and values of {names[0]!r} do not match")
        prefix = names[0][:-1]
        for name, value in zip(names[1:], values[1:]):
            try:
                counters[prefix + name] = int(value)
            except ValueError:
                raise DiagMalformed(f"{what}: {prefix}{name} is {value!r}, not a number") from None
    return counters


def parse_snmp6(text: str, what: str) -> Dict[str, int]:
    """'Name value' lines (snmp6) -> {name: value}."""
    counters = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        try:
            name, value = fields
            counters[name] = int(value)
        except ValueError:
            raise DiagMalformed(f"{what}: cannot parse {line.strip()[:80]!r}") from None
    return counters


def read_counters(proc: ProcNet, name: str) -> Dict[str, int]:
    """Counters of /proc/net/<name> (snmp, snmp6 or netstat); snmp6 is absent where IPv6 is disabled."""
    text = proc.read(name)
    return parse_snmp6(text, name) if name == "snmp6" else parse_pairs_table(text, name)


class PortRange(NamedTuple):
    """net.ipv4.ip_local_port_range less net.ipv4.ip_local_reserved_ports: the ports connect() picks from."""

    low: int
    high: int
    reserved: FrozenSet[int]  # reserved ports inside the range

    @property
    def size(self) -> int:
        return self.high - self.low + 1 - len(self.reserved)


def read_port_range(proc: ProcNet) -> PortRange:
    """The namespace's ephemeral port range (both sysctls apply to IPv4 and IPv6)."""
    text = proc.sysctl("ipv4/ip_local_port_range")
    try:
        low, high = (int(v) for v in text.split())
    except ValueError:
        raise DiagMalformed(f"ip_local_port_range: {text.strip()[:40]!r} is not two ports") from None
    if not 0 < low <= high <= 65535:
        raise DiagMalformed(f"ip_local_port_range: {low} {high} is not a range of ports")
    reserved = set()
    for item in proc.sysctl("ipv4/ip_local_reserved_ports").strip().split(","):
        first, _, last = item.partition("-")
        try:
            reserved.update(range(int(first), int(last or first) + 1) if item else ())
        except ValueError:
            raise DiagMalformed(f"ip_local_reserved_ports: {item[:40]!r} is not a port or a range") from None
    return PortRange(low, high, frozenset(p for p in reserved if low <= p <= high))


def read_sysctl_int(proc: ProcNet, name: str) -> int:
    text = proc.sysctl(name)
    try:
        return int(text)
    except ValueError:
        raise DiagMalformed(f"{name}: {text.strip()[:40]!r} is not a number") from None
