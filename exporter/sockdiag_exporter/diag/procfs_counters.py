"""Monotonic protocol counters from /proc/net/snmp, snmp6 and netstat of the calling thread's namespace."""

from typing import Dict

from .errors import DiagMalformed, from_errno
from .procfs import proc_net_path


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


def read_counters(name: str) -> Dict[str, int]:
    """Counters of /proc/net/<name> (snmp, snmp6 or netstat); snmp6 is absent where IPv6 is disabled."""
    path = proc_net_path(name)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise from_errno(e.errno, f"reading {path}") from None
    return parse_snmp6(text, path) if name == "snmp6" else parse_pairs_table(text, path)
