"""Who owns a cgroup: the Kubernetes pod, container or systemd unit a cgroup path belongs to.

Used for network namespaces (the cgroup of a process in them) and for sockets (their cgroup v2 id). Pods are named
as the kubelet names them (the pod UID with dashes, as kube-state-metrics' `uid` label has it), whichever cgroup
driver made the path:

- cgroupfs driver: ``/kubepods/burstable/pod<uid>/<container id>`` (no QoS class folder for guaranteed pods);
- systemd driver: ``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid, _ for ->.slice/
  cri-containerd-<container id>.scope`` (``crio-<id>.scope`` for CRI-O, ``docker-<id>.scope`` for dockershim).
"""

import re
from typing import NamedTuple

_ID = r"[0-9a-f]{64}|[0-9a-f]{12,}"
# A pod's folder under either driver: pod<uid> (cgroupfs, dashes) or ...-pod<uid>.slice (systemd, underscores).
_POD = re.compile(r"kubepods[^/]*(?:/[^/]*)*?/(?:[^/]*-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}"
                  r"[-_][0-9a-f]{12})(?:\.slice)?(?:/(.*))?$")
# A container in a pod, or anywhere: the engine's scope (systemd) or a bare id folder (cgroupfs).
_SCOPE = re.compile(rf"(?:docker|cri-containerd|crio|libpod)-({_ID})\.scope")
_BARE = re.compile(rf"^({_ID})$")
_DOCKER_CGROUPFS = re.compile(rf"/docker/({_ID})")
_MACHINE = re.compile(r"machine-([^/]+)\.scope")
_UNIT = re.compile(r"/([^/]+\.service)$")


class Owner(NamedTuple):
    name: str  # what the cgroup label shows: pod-<uid>, a short container id, a machine, a unit; "" if unknown
    pod_uid: str  # the Kubernetes pod UID with dashes, "" outside pods
    container_id: str  # the full container id (64 hex digits for containerd, CRI-O, Docker), "" if none


def owner(cgroup: str) -> Owner:
    """The pod, container or systemd unit a cgroup path belongs to."""
    pod = _POD.search(cgroup)
    if pod:
        uid = pod.group(1).replace("_", "-")
        rest = pod.group(2) or ""
        leaf = rest.rsplit("/", 1)[-1]
        scope = _SCOPE.fullmatch(leaf) or _BARE.match(leaf)
        return Owner(f"pod-{uid}", uid, scope.group(1) if scope else "")
    for pattern in (_SCOPE, _DOCKER_CGROUPFS):
        container = pattern.search(cgroup)
        if container:
            return Owner(container.group(1)[:12], "", container.group(1))
    for pattern in (_MACHINE, _UNIT):
        match = pattern.search(cgroup)
        if match:
            return Owner(match.group(1), "", "")
    return Owner("", "", "")


def container_name(cgroup: str) -> str:
    """The short name of what owns a cgroup path (Owner.name)."""
    return owner(cgroup).name


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
