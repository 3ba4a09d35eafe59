"""Which network namespaces to collect, what to call them, and running collectors inside one.

A namespace is identified by its nsfs inode. The exporter's own is always collected; the named ones in /run/netns
and, opt-in, every distinct namespace of a process are added when configured. Entering a namespace (setns) is per
thread, so each namespace is collected in a short-lived thread that entered it; the HTTP threads stay in the
exporter's own namespace. setns needs CAP_SYS_ADMIN, and seeing other users' processes' namespaces
CAP_SYS_PTRACE: without them the feature is switched off and said so once.
"""

import fnmatch
import logging
import os
import threading
from typing import Callable, Dict, List, NamedTuple, Optional

from pyroute2 import netns as pyroute2_netns

log = logging.getLogger(__name__)

NETNS_RUN_DIR = "/run/netns"
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21


class Namespace(NamedTuple):
    inode: int  # the namespace's identity
    label: str  # the netns label: a /run/netns name, "host", "self", or netns-<inode>
    path: str  # a file to setns() with; "" for the exporter's own
    pid: Optional[int] = None  # a process in it, for container attribution (process namespaces only)


class NamespaceGone(Exception):
    """The namespace disappeared between discovery and collection: not an error, it is simply no longer there."""


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
    found = []
    for name in sorted(pyroute2_netns.listnetns(NETNS_RUN_DIR)):
        try:
            found.append(Namespace(os.stat(os.path.join(NETNS_RUN_DIR, name)).st_ino, name,
                                   os.path.join(NETNS_RUN_DIR, name)))
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
    return list(seen.values())


def select(found: List[Namespace], include, exclude, cap: int):
    """(kept, folded into "other"): the exporter's own namespace (found[0]) always first and kept; the others
    through the include/exclude patterns (on labels), then up to cap namespaces in all."""
    others = [ns for ns in found[1:]
              if (not include or any(fnmatch.fnmatchcase(ns.label, p) for p in include))
              and not any(fnmatch.fnmatchcase(ns.label, p) for p in exclude)]
    kept = [found[0]] + others
    return kept[:max(cap, 1)], kept[max(cap, 1):]


def run_inside(ns: Namespace, fn: Callable):
    """fn() with the calling thread's network namespace being ns; raises NamespaceGone if ns vanished."""
    if not ns.path:
        return fn()
    try:
        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceGone(ns.label) from None
    try:
        if os.fstat(fd).st_ino != ns.inode:  # the name now points to another namespace
            raise NamespaceGone(ns.label)
        result = {}

        def target():
            try:
                pyroute2_netns.setns(fd)
                result["value"] = fn()
            except BaseException as e:  # handed to the caller
                result["error"] = e

        thread = threading.Thread(target=target, name=f"netns {ns.label}")
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if "error" in result:
        raise result["error"]
    return result["value"]


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

    def plan(self):
        """(kept, folded) namespaces for this collection: the own one first, then named, then process ones."""
        found, seen = [self.own], {self.own.inode}
        sources = []
        if self.enabled["named_namespaces"]:
            sources.append(named_namespaces())
        if self.enabled["process_namespaces"]:
            sources.append(sorted(process_namespaces(), key=lambda ns: ns.inode))
        for source in sources:
            for ns in source:
                if ns.inode not in seen:
                    seen.add(ns.inode)
                    found.append(ns)
        return select(found, self.include, self.exclude, self.cap)

    def context(self, ns: Namespace):
        ctx = self.contexts.get(ns.inode)
        if ctx is None:
            ctx = self.contexts[ns.inode] = self.make_context()
        return ctx

    def retire(self, live) -> None:
        """Close the diag sockets of namespaces not seen in this collection (they vanished, or were folded out)."""
        for inode in [i for i in self.contexts if i not in live]:
            self.contexts.pop(inode).close()

    def close(self) -> None:
        self.retire(())
