"""Socket cgroup ids (INET_DIAG_CGROUP_ID, kernel 5.7+) to systemd units and containers, on cgroup v2.

A cgroup v2 id is the inode number of the cgroup's directory: the hierarchy is walked once and again on a miss
(at most once a second). Where the ids cannot be trusted the feature stays off and says why: no cgroup2 mounted
(a cgroup v1-only host), or the v1 net_cls/net_prio controllers in use (the kernel then stops tagging sockets with
their v2 cgroup, and every socket would look like the root's).
"""

import logging
import os
import time
from typing import Dict, Optional

from .containers import container_name

log = logging.getLogger(__name__)


def mounts():
    """(mount point, file system type, super options) of every mount of this mount namespace."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= 5 and len(tail) >= 3:
                yield fields[4].replace("\\040", " "), tail[0], tail[2]


def unavailable_reason(mount: str) -> Optional[str]:
    """Why socket cgroup ids cannot be mapped with the cgroup2 hierarchy at mount, or None if they can."""
    found = list(mounts())
    if any(fstype == "cgroup" and ({"net_cls", "net_prio"} & set(options.split(","))) for _, fstype, options in found):
        return ("the cgroup v1 net_cls/net_prio controllers are in use: the kernel then stops tagging sockets with "
                "their cgroup v2 id")
    if any(point == mount and fstype == "cgroup2" for point, fstype, _ in found):
        return None
    elsewhere = list(dict.fromkeys(point for point, fstype, _ in found if fstype == "cgroup2"))
    if elsewhere:  # a hybrid host (cgroup2 at /sys/fs/cgroup/unified), or a mistyped cgroups.mount
        return (f"no cgroup2 hierarchy is mounted at {mount}; cgroup2 is mounted at {', '.join(elsewhere)} "
                f"(set cgroups.mount to it, or leave it empty to find it)")
    v1 = any(fstype == "cgroup" for _, fstype, _ in found)
    return f"no cgroup2 hierarchy is mounted at {mount} ({'a cgroup v1-only host' if v1 else 'no cgroup is mounted'})"


def cgroup_map(config) -> Optional["CgroupMap"]:
    """The cgroup map when attribution is configured (config: a config.CgroupsConfig) and trustworthy here; said
    once in the log when it is not."""
    if not config.enabled:
        return None
    mount = config.mount or default_mount()
    reason = unavailable_reason(mount)
    if reason:
        log.warning("cgroup attribution is off: %s", reason)
        return None
    return CgroupMap(mount, config.depth)


def default_mount() -> str:
    """Where cgroup v2 is: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one."""
    for point, fstype, _ in mounts():
        if fstype == "cgroup2":
            return point
    return "/sys/fs/cgroup"


class CgroupMap:
    """cgroup id -> the unit or container it belongs to (or its path, cut to depth components)."""

    def __init__(self, mount: str, depth: int, clock=time.monotonic):
        self.mount = mount
        self.depth = depth
        self._clock = clock
        self._paths: Dict[int, str] = {}
        self._walked = float("-inf")

    def refresh(self) -> None:
        paths = {}
        for directory, _, _ in os.walk(self.mount):
            try:
                paths[os.stat(directory).st_ino] = "/" + os.path.relpath(directory, self.mount).lstrip(".")
            except OSError:  # removed while walking
                continue
        self._paths = paths
        self._walked = self._clock()

    def name(self, cgroup_id: int) -> str:
        if cgroup_id == 0:
            return "none"  # no owner: time_wait, request sockets
        path = self._paths.get(cgroup_id)
        if path is None and self._clock() - self._walked >= 1.0:
            self.refresh()
            path = self._paths.get(cgroup_id)
        if path is None:
            return "unknown"  # removed since
        named = container_name(path)
        if named:
            return named
        parts = [p for p in path.split("/") if p]
        return "/" + "/".join(parts[: self.depth])
