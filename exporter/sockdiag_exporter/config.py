"""Configuration: YAML validated once, at the edge, into frozen typed objects.

Every problem is a ConfigError whose message is one line naming the key path and what is wrong.
"""

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import yaml

from .collectors import REGISTRY
from .diag.requests import MEMINFO_NAMES

DEFAULT_PORT = 9965
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")


class ConfigError(Exception):
    """Invalid configuration; str() is one line."""


def parse_listen_address(value: str) -> Tuple[str, int]:
    """'host:port', '[v6]:port' or ':port' (every address) -> (host, port); host '' means every address."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.%\w]+)\]|([^\[\]:]*)):(\d{1,5})", value)
    if not match:
        raise ValueError("expected host:port, [ipv6]:port or :port")
    port = int(match.group(3))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    return (match.group(1) or match.group(2) or ""), port


def _listen_address(value: str) -> str:
    parse_listen_address(value)
    return value


def _telemetry_path(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]+", value):
        raise ValueError("expected an absolute path other than / (letters, digits, ._~-/)")
    return value


def _one_of(choices):
    def check(value):
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value
    return check


def _between(low, high):
    def check(value):
        if not low <= value <= high:
            raise ValueError(f"expected a value from {low:g} to {high:g}")
        return value
    return check


DEFAULT_BUCKETS = (0, 4096, 65536, 1 << 20, 16 << 20)
FULL_BUCKETS = (0, 1024, 4096, 16384, 65536, 262144, 1 << 20, 4 << 20, 16 << 20)  # the full profile's
MEMORY_CAPABLE = ("tcp", "udp", "udplite", "raw", "mptcp", "sctp", "dccp", "unix", "netlink", "packet")
QUEUE_COLLECTORS = MEMORY_CAPABLE  # the collectors whose sockets report queue sizes
MEMORY_FIELDS = MEMINFO_NAMES  # SK_MEMINFO_VARS, in the kernel's order
PROFILES = ("default", "full")
GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def _buckets(values: list) -> tuple:
    if not 1 <= len(values) <= 64:
        raise ValueError("expected 1 to 64 bucket bounds")
    for v in values:
        if type(v) is not int or v < 0:
            raise ValueError(f"bound {v!r} is not a whole number of bytes >= 0")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError("bounds must increase strictly")
    return tuple(values)


DEFAULT_RTT_BUCKETS = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)  # decades: 9 series per direction (series economy)
FULL_RTT_BUCKETS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # the full profile's


def _rtt_buckets(values: list) -> tuple:
    if len(values) > 64:
        raise ValueError("expected at most 64 bucket bounds (none: no histogram)")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.000001 <= v <= 3600:
            raise ValueError(f"bound {v!r} is not a number of seconds from 0.000001 to 3600")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError("bounds must increase strictly")
    return tuple(float(v) for v in values)


def _memory_collectors(values: list) -> tuple:
    for v in values:
        if v not in MEMORY_CAPABLE:
            raise ValueError(f"{v!r} is not one of {', '.join(MEMORY_CAPABLE)}")
    return tuple(dict.fromkeys(values))


def _ports(values: list) -> tuple:
    ports = []
    for v in values:
        if type(v) is int and 1 <= v <= 65535:
            ports.append(v)
            continue
        match = re.fullmatch(r"(\d{1,5})-(\d{1,5})", v) if isinstance(v, str) else None
        if not match or not 1 <= int(match.group(1)) <= int(match.group(2)) <= 65535:
            raise ValueError(f"{v!r} is not a port (1-65535) or a range \"low-high\"")
        ports.extend(range(int(match.group(1)), int(match.group(2)) + 1))
    return tuple(sorted(set(ports)))


def _opt(default, check=None):
    return field(default=default, metadata={"check": check} if check else {})


def _optional_path(value: str) -> str:
    if value and not value.strip():
        raise ValueError("expected a path, or empty for none")
    return value


@dataclass(frozen=True)
class WebConfig:
    listen_address: str = _opt(f":{DEFAULT_PORT}", _listen_address)
    telemetry_path: str = _opt("/metrics", _telemetry_path)
    config_file: str = _opt("", _optional_path)  # exporter-toolkit web configuration (TLS, auth); empty: none
    max_connections: int = _opt(256, _between(1, 100000))
    max_connections_per_client: int = _opt(32, _between(1, 100000))  # per client address
    read_timeout_seconds: float = _opt(10.0, _between(0.1, 3600))  # a request (head and body), TLS handshake too
    idle_timeout_seconds: float = _opt(5.0, _between(0.1, 3600))  # a kept-alive connection between requests
    write_timeout_seconds: float = _opt(10.0, _between(0.1, 3600))  # a response the client does not read


@dataclass(frozen=True)
class LogConfig:
    level: str = _opt("info", _one_of(LOG_LEVELS))
    format: str = _opt("logfmt", _one_of(LOG_FORMATS))


@dataclass(frozen=True)
class NetlinkConfig:
    receive_buffer_bytes: int = _opt(1 << 20, _between(32768, 64 << 20))
    timeout_seconds: float = _opt(10.0, _between(0.1, 300))
    dump_retries: int = _opt(3, _between(0, 100))
    recheck_unsupported_seconds: float = _opt(300.0, _between(0, 86400))


@dataclass(frozen=True)
class CollectionConfig:
    # threads that collect at once (dumps of different families and namespaces; IPv4 and IPv6 of a protocol):
    # 0 = one per CPU the exporter may use (affinity, cgroup quota), at most MAX_AUTO_WORKERS; 1 = one at a time
    workers: int = _opt(0, _between(0, 64))


MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class ListenersConfig:
    max_series: int = _opt(100, _between(0, 100000))


def _queue_collectors(values: list) -> tuple:
    for v in values:
        if v not in QUEUE_COLLECTORS:
            raise ValueError(f"{v!r} is not one of {', '.join(QUEUE_COLLECTORS)}")
    return tuple(dict.fromkeys(values))


def _memory_fields(values: list) -> tuple:
    for v in values:
        if v not in MEMORY_FIELDS:
            raise ValueError(f"{v!r} is not one of {', '.join(MEMORY_FIELDS)}")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class UdpReceiversConfig:
    max_series: int = _opt(50, _between(0, 100000))  # unconnected UDP sockets reported one by one, per collector


@dataclass(frozen=True)
class EphemeralPortsConfig:
    destinations: int = _opt(0, _between(0, 1000))  # busiest destinations reported one by one per family; 0: none
    interval_seconds: float = _opt(60.0, _between(0, 3600))  # between analyses (counting per destination); 0: each


@dataclass(frozen=True)
class HistogramsConfig:
    enabled: bool = _opt(True)
    buckets: tuple = _opt(DEFAULT_BUCKETS, _buckets)
    collectors: tuple = _opt(("tcp", "unix"), _queue_collectors)  # whose sockets get queue histograms


@dataclass(frozen=True)
class MemoryConfig:
    collectors: tuple = _opt(("udp", "udplite", "raw", "unix", "packet"), _memory_collectors)
    fields: tuple = _opt(("rmem_alloc", "rcvbuf", "drops"), _memory_fields)  # the SK_MEMINFO values exported


def _patterns(values: list) -> tuple:
    for v in values:
        if not isinstance(v, str) or not v:
            raise ValueError(f"{v!r} is not a name or glob pattern")
    return tuple(values)


@dataclass(frozen=True)
class NamespacesConfig:
    named: bool = _opt(False)  # every namespace in /run/netns
    processes: bool = _opt(False)  # every distinct namespace of any process
    include: tuple = _opt((), _patterns)  # glob patterns on the netns label; empty: all
    exclude: tuple = _opt((), _patterns)
    max_namespaces: int = _opt(100, _between(1, 100000))
    sparse: bool = _opt(True)  # other namespaces: no zero-valued series, no copies of kernel-wide facts

    @property
    def enabled(self) -> bool:
        return self.named or self.processes


@dataclass(frozen=True)
class CgroupsConfig:
    enabled: bool = _opt(False)  # counts and queues per systemd unit or container (cgroup v2)
    mount: str = _opt("", _optional_path)  # the cgroup2 mount; empty: found in /proc/self/mountinfo
    depth: int = _opt(2, _between(1, 32))  # path components kept where no unit or container rule matches
    max_series: int = _opt(100, _between(1, 100000))  # cgroups reported one by one per collector and family


@dataclass(frozen=True)
class FlowsConfig:
    receive_buffer_bytes: int = _opt(8 << 20, _between(65536, 1 << 30))  # the destroy-event socket's buffer
    rtt_buckets: tuple = _opt(DEFAULT_RTT_BUCKETS, _rtt_buckets)  # seconds; empty: no RTT histogram
    max_listeners: int = _opt(20, _between(0, 10000))  # listening addresses with their own flow series


def _group_names(values: list) -> tuple:
    for v in values:
        if not isinstance(v, str) or not GROUP_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a port group name")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class TcpHealthConfig:
    enabled: bool = _opt(False)  # a dump of connected TCP sockets with tcp_info at every collection (opt-in: cost)
    port_groups: tuple = _opt((), _group_names)  # only connections of these port groups (a kernel filter); empty: all
    rtt_buckets: tuple = _opt(DEFAULT_RTT_BUCKETS, _rtt_buckets)  # seconds


@dataclass(frozen=True)
class PortGroup:
    local: tuple = _opt((), _ports)
    remote: tuple = _opt((), _ports)


@dataclass(frozen=True)
class Config:
    web: WebConfig = field(default_factory=WebConfig)
    log: LogConfig = field(default_factory=LogConfig)
    netlink: NetlinkConfig = field(default_factory=NetlinkConfig)
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    collectors: Dict[str, bool] = field(default_factory=lambda: {name: True for name in REGISTRY})
    listeners: ListenersConfig = field(default_factory=ListenersConfig)
    udp_receivers: UdpReceiversConfig = field(default_factory=UdpReceiversConfig)
    ephemeral_ports: EphemeralPortsConfig = field(default_factory=EphemeralPortsConfig)
    histograms: HistogramsConfig = field(default_factory=HistogramsConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    port_groups: Dict[str, PortGroup] = field(default_factory=dict)
    series_budget: int = 0
    # default: zero-valued series only where alerts and dashboards need them, lean histograms and memory; full:
    # every known state of every family with zeros, histograms of every collector, every SK_MEMINFO field
    profile: str = "default"
    namespaces: NamespacesConfig = field(default_factory=NamespacesConfig)
    cgroups: CgroupsConfig = field(default_factory=CgroupsConfig)
    flows: FlowsConfig = field(default_factory=FlowsConfig)
    tcp_health: TcpHealthConfig = field(default_factory=TcpHealthConfig)

    def enabled_collectors(self):
        """The collectors that run: tcp_health only with tcp_health.enabled (no series of its own when off)."""
        return [REGISTRY[name] for name, on in self.collectors.items()
                if on and (name != "tcp_health" or self.tcp_health.enabled)]


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", tuple: "a list"}


def _scalar(value: Any, kind: type, path: str):
    """value checked to be of kind; a list stands for a tuple (the check function makes the tuple)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is tuple and isinstance(value, list):
        return value
    if type(value) is not kind or (kind is float and not math.isfinite(value)):
        raise ConfigError(f"{path}: expected {_TYPE_NAMES[kind]}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"


def _mapping(data: Any, path: str) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {_describe(data)}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {key!r} is not a string")
    return data


def _unknown(path: str, key: str, known) -> ConfigError:
    where = f"{path}.{key}" if path else key
    return ConfigError(f"{where}: unknown key (known: {', '.join(known)})")


def _section(cls, data: Any, path: str, base):
    data = _mapping(data, path)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown(path, key, fields)
        f = fields[key]
        value = _scalar(value, f.type, f"{path}.{key}")
        check = f.metadata.get("check")
        if check:
            try:
                value = check(value)
            except ValueError as e:
                raise ConfigError(f"{path}.{key}: {value!r}: {e}") from None
        values[key] = value
    return dataclasses.replace(base, **values)


def _collectors(data: Any, base: Dict[str, bool]) -> Dict[str, bool]:
    result = dict(base)
    for name, on in _mapping(data, "collectors").items():
        if name not in REGISTRY:
            raise _unknown("collectors", name, REGISTRY)
        result[name] = _scalar(on, bool, f"collectors.{name}")
    return result


def _port_groups(data: Any) -> Dict[str, PortGroup]:
    groups = {}
    for name, spec in _mapping(data, "port_groups").items():
        if not GROUP_NAME.fullmatch(name):
            raise ConfigError(f"port_groups.{name}: a group name is a letter or _ then letters, digits, _.- "
                              f"(64 at most)")
        group = _section(PortGroup, spec, f"port_groups.{name}", PortGroup())
        if not group.local and not group.remote:
            raise ConfigError(f"port_groups.{name}: needs local or remote ports")
        groups[name] = group
    if len(groups) > 64:
        raise ConfigError(f"port_groups: {len(groups)} groups, 64 at most")
    return groups


def full_profile(config: "Config") -> "Config":
    """config with the full profile's defaults: what a profile sets, keys given explicitly then override."""
    return dataclasses.replace(
        config, profile="full",
        histograms=dataclasses.replace(config.histograms, buckets=FULL_BUCKETS, collectors=QUEUE_COLLECTORS),
        memory=dataclasses.replace(config.memory, fields=MEMORY_FIELDS),
        flows=dataclasses.replace(config.flows, rtt_buckets=FULL_RTT_BUCKETS))


def from_dict(data: Any, base: Optional[Config] = None) -> Config:
    """Validate parsed YAML into a Config, on top of base (defaults when None)."""
    base = base or Config()
    data = _mapping(data, "config")
    if "profile" in data:
        profile = _scalar(data["profile"], str, "profile")
        if profile not in PROFILES:
            raise ConfigError(f"profile: {profile!r}: expected one of {', '.join(PROFILES)}")
        if profile == "full":
            base = full_profile(base)
    sections = {"web": WebConfig, "log": LogConfig, "netlink": NetlinkConfig, "collection": CollectionConfig,
                "listeners": ListenersConfig, "udp_receivers": UdpReceiversConfig,
                "ephemeral_ports": EphemeralPortsConfig,
                "histograms": HistogramsConfig, "memory": MemoryConfig, "namespaces": NamespacesConfig,
                "cgroups": CgroupsConfig, "flows": FlowsConfig, "tcp_health": TcpHealthConfig}
    known = list(sections) + ["collectors", "port_groups", "series_budget", "profile"]
    values = {}
    for key, value in data.items():
        if key == "profile":
            continue  # applied first
        if key in sections:
            values[key] = _section(sections[key], value, key, getattr(base, key))
        elif key == "collectors":
            values[key] = _collectors(value, base.collectors)
        elif key == "port_groups":
            values[key] = _port_groups(value)
        elif key == "series_budget":
            values[key] = _scalar(value, int, key)
            if not 0 <= value <= 100_000_000:
                raise ConfigError(f"series_budget: {value!r}: expected 0 (no budget) to 100000000")
        else:
            raise _unknown("", key, known)
    config = dataclasses.replace(base, **values)
    for name in config.tcp_health.port_groups:
        if name not in config.port_groups:
            raise ConfigError(f"tcp_health.port_groups: {name!r} is not a group of port_groups")
    return config


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise ConfigError(f"line {mark.line + 1}: key {key!r} appears twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(path: str) -> Config:
    """Read, parse and validate a YAML config file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML: {where}{problem}") from None
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
