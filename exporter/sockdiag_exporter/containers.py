"""Who owns a cgroup: the Kubernetes pod, container or systemd unit a cgroup path belongs to.

Used for network namespaces (the cgroup of a process in them) and for sockets (their cgroup v2 id).
"""

import re

# cgroup path -> (a name for what owns it), most specific first: Kubernetes pods, container engines, systemd units.
CONTAINER_RULES = (
    (r"kubepods.*?pod([0-9a-f_-]{36})", "pod-{0}"),
    (r"(?:docker|cri-containerd|crio|libpod)-([0-9a-f]{12})[0-9a-f]*\.scope", "{0}"),
    (r"/docker/([0-9a-f]{12})", "{0}"),
    (r"machine-([^/]+)\.scope", "{0}"),
    (r"/([^/]+\.service)$", "{0}"),
)


def process_cgroup(pid: int) -> str:
    """The cgroup path of a process: the unified (v2) hierarchy's, else systemd's v1 one; "" if unknown."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return ""
    for wanted in ("", "name=systemd"):
        for hierarchy, controllers, path in (line for line in lines if len(line) == 3):
            if controllers == wanted and (wanted or hierarchy == "0"):
                return path
    return ""


def container_name(cgroup: str) -> str:
    """The pod, container or systemd unit a cgroup path belongs to, by CONTAINER_RULES; "" when none matches."""
    for pattern, name in CONTAINER_RULES:
        match = re.search(pattern, cgroup)
        if match:
            return name.format(*match.groups())
    return ""
