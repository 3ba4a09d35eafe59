"""The collector registry: every collector by name, in output order."""

from typing import Dict

from . import counted, flows, inet, netlink, netstat, packet, tcp_health, unix
from .base import Collector

REGISTRY: Dict[str, Collector] = {
    col.name: col
    for col in inet.COLLECTORS + unix.COLLECTORS + netlink.COLLECTORS + packet.COLLECTORS + counted.COLLECTORS
    + netstat.COLLECTORS + flows.COLLECTORS + tcp_health.COLLECTORS
}
