"""Which network namespaces to collect, what to call them, and how to get into one.

A namespace is identified by its nsfs inode. The exporter's own is always collected; the named ones in /run/netns
and, opt-in, every distinct namespace of a process are added when configured. A namespace found both ways keeps
its name and its owner (a process in it, hence its pod or container). Entering a namespace (setns) is per thread:
the collection's workers enter each namespace they collect, through an open file of it (open_door); the HTTP
threads stay in the exporter's own namespace (workers.py). setns needs CAP_SYS_ADMIN, and seeing other users'
processes' namespaces CAP_SYS_PTRACE: without them the feature is switched off and said so once.

Trouble finding or entering other namespaces costs only those namespaces, never the exporter's own: discovery
failures are kept per source with a bounded reason (and logged once per change), entering failures per namespace.
"""

import errno
import fnmatch
import logging
import os
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from pyroute2 import netns as pyroute2_netns

from .workers import Door

log = logging.getLogger(__name__)

NETNS_RUN_DIR = "/run/netns"
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21

# errno -> the bounded reason label of a discovery or entering failure
REASONS = {errno.EACCES: "permission_denied", errno.EPERM: "permission_denied", errno.ENOTDIR: "not_a_directory",
           errno.EINVAL: "not_a_network_namespace", errno.ENOENT: "not_found"}


def reason_of(error: OSError) -> str:
    return REASONS.get(error.errno, "error")


def cause_of(error: OSError) -> str:
    """What went wrong, in words (setns says EINVAL for a file that is not a network namespace)."""
    if error.errno == errno.EINVAL:
        return "not a network namespace"
    return os.strerror(error.errno) if error.errno else str(error)


class Namespace(NamedTuple):
    inode: int  # the namespace's identity
    label: str  # the netns label: a /run/netns name, "host", "self", or netns-<inode>
    path: str  # a file to setns() with; "" for the exporter's own
    pid: Optional[int] = None  # a process in it, for container attribution


class NamespaceGone(Exception):
    """The namespace disappeared between discovery and collection: not an error, it is simply no longer there."""


class CannotEnter(Exception):
    """Opening or entering the namespace failed for another reason than its disappearance."""

    def __init__(self, ns: Namespace, error: OSError):
        super().__init__(f"cannot enter network namespace {ns.label} ({ns.path}): {cause_of(error)}")
        self.reason = reason_of(error)


class Discovery(NamedTuple):
    namespaces: List[Namespace]  # the exporter's own first
    failures: Dict[str, Tuple[str, str]]  # source ("named", "processes") -> (reason label, message)


def effective_capabilities() -> int:
    with open("/proc/thread-self/status") as f:  # capabilities are per thread
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def own_namespace() -> Namespace:
    inode = os.stat("/proc/thread-self/ns/net").st_ino
    try:
        host = os.stat("/proc/1/ns/net").st_ino == inode
    except OSError:  # pid 1 is not ours to look at: we cannot tell
        host = False
    return Namespace(inode, "host" if host else "self", "")


def named_namespaces() -> List[Namespace]:
    """The namespaces in /run/netns (none when it does not exist); raises OSError when it cannot be listed."""
    found = []
    for name in sorted(pyroute2_netns.listnetns(NETNS_RUN_DIR)):
        path = os.path.join(NETNS_RUN_DIR, name)
        try:
            found.append(Namespace(os.stat(path).st_ino, name, path))
        except OSError:  # deleted while listing
            continue
    return found


def process_namespaces() -> List[Namespace]:
    """One entry per distinct namespace any process is in (the lowest pid holding it)."""
    seen: Dict[int, Namespace] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        path = f"/proc/{entry}/ns/net"
        try:
            inode = os.stat(path).st_ino
        except OSError:  # gone, or not ours to see
            continue
        if inode not in seen or int(entry) < seen[inode].pid:
            seen[inode] = Namespace(inode, f"netns-{inode}", path, int(entry))
    return sorted(seen.values(), key=lambda ns: ns.inode)


def merge(own: Namespace, named: List[Namespace], processes: List[Namespace]) -> List[Namespace]:
    """One entry per namespace, the own first: a /run/netns name wins the label, a process gives the owner."""
    pids = {ns.inode: ns.pid for ns in processes}
    found = {own.inode: own._replace(pid=pids.get(own.inode))}
    for ns in named:
        found.setdefault(ns.inode, ns._replace(pid=pids.get(ns.inode)))
    for ns in processes:
        found.setdefault(ns.inode, ns)
    return list(found.values())


def select(found: List[Namespace], include, exclude) -> List[Namespace]:
    """The exporter's own namespace (found[0]) and the others that pass the include/exclude patterns (labels)."""
    return [found[0]] + [ns for ns in found[1:]
                         if (not include or any(fnmatch.fnmatchcase(ns.label, p) for p in include))
                         and not any(fnmatch.fnmatchcase(ns.label, p) for p in exclude)]


def open_door(ns: Namespace) -> Door:
    """An open file of ns for the workers to enter it with (it also keeps the namespace alive while open); raises
    NamespaceGone if ns vanished and CannotEnter if it cannot be opened."""
    try:
        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceGone(ns.label) from None
    except OSError as e:
        raise CannotEnter(ns, e) from None
    if os.fstat(fd).st_ino != ns.inode:  # the name now points to another namespace
        os.close(fd)
        raise NamespaceGone(ns.label)
    return Door(ns.inode, fd)


class NamespaceSet:
    """The namespaces one collection covers, each with its own Context (and cached diag socket).

    Features the exporter lacks the capabilities for are switched off, said once in the log and in `enabled`.
    """

    def __init__(self, named: bool, processes: bool, include, exclude, cap: int, make_context: Callable):
        caps = effective_capabilities()
        self.enabled = {"named_namespaces": named, "process_namespaces": processes}
        if (named or processes) and not caps & (1 << CAP_SYS_ADMIN):
            log.warning("other network namespaces are not collected: entering them (setns) needs CAP_SYS_ADMIN; "
                        "see deploy/systemd/sockdiag-exporter.service.d/namespaces.conf")
            self.enabled = {feature: False for feature in self.enabled}
        elif processes and not caps & (1 << CAP_SYS_PTRACE):
            log.warning("process namespaces: only those of the exporter's own user's processes are visible; "
                        "seeing every process's namespace needs CAP_SYS_PTRACE")
        self.include, self.exclude, self.cap = tuple(include), tuple(exclude), cap
        self.make_context = make_context
        self.contexts: Dict[int, object] = {}
        self.own = own_namespace()
        self._failing: Dict[str, Tuple[str, str]] = {}  # the discovery failures last logged

    def discover(self) -> Discovery:
        """The namespaces to collect this time; a source that cannot be read is skipped and reported."""
        failures: Dict[str, Tuple[str, str]] = {}
        found: Dict[str, List[Namespace]] = {"named": [], "processes": []}
        for source, on, lister, where in (
                ("named", self.enabled["named_namespaces"], named_namespaces, NETNS_RUN_DIR),
                ("processes", self.enabled["process_namespaces"], process_namespaces, "/proc")):
            if not on:
                continue
            try:
                found[source] = lister()
            except OSError as e:
                failures[source] = (reason_of(e), f"cannot list network namespaces in {where}: {cause_of(e)}")
        self._log_changes(failures)
        namespaces = merge(self.own, found["named"], found["processes"])
        return Discovery(select(namespaces, self.include, self.exclude), failures)

    def _log_changes(self, failures: Dict[str, Tuple[str, str]]) -> None:
        for source in sorted(set(failures) | set(self._failing)):
            now, before = failures.get(source), self._failing.get(source)
            if now and now != before:
                log.warning("%s; only the namespaces found otherwise are collected", now[1])
            elif before and not now:
                log.info("network namespaces are found in %s again",
                         NETNS_RUN_DIR if source == "named" else "/proc")
        self._failing = failures

    def context(self, ns: Namespace):
        ctx = self.contexts.get(ns.inode)
        if ctx is None:
            ctx = self.contexts[ns.inode] = self.make_context()
        return ctx

    def retire(self, live) -> None:
        """Close the diag sockets of namespaces not seen in this collection (they vanished)."""
        for inode in [i for i in self.contexts if i not in live]:
            self.contexts.pop(inode).close()

    def close(self) -> None:
        self.retire(())
