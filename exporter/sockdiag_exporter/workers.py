"""The collection's worker threads: independent pieces of a collection (a collector in a network namespace) run at
once, each in the namespace it belongs to.

The kernel makes a dump inside recv(), with the GIL released, so dumps on several threads overlap on several cores;
decoding needs the GIL and takes turns. Entering a namespace (setns) is per thread: a worker enters the namespace of
each task it runs (a syscall, when it is not there already), so threads outside the pool, the HTTP ones among them,
never leave the exporter's own namespace. With one worker and no other namespace, tasks run in the calling thread,
one after another, as they always did.
"""

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class Door(NamedTuple):
    """How a worker gets into a network namespace: its inode (identity) and an open file of it."""

    inode: int
    fd: int


class EnterError(OSError):
    """setns() refused the namespace (errno tells why: EINVAL for a file that is not a network namespace)."""


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, lowered by a cgroup v2 CPU quota (cpu.max) when one is set."""
    cpus = len(os.sched_getaffinity(0))
    try:
        with open("/proc/self/cgroup") as f:
            path = next((line.split(":", 2)[2].strip() for line in f if line.startswith("0::")), "")
        for directory in {f"/sys/fs/cgroup{path}".rstrip("/"), "/sys/fs/cgroup"}:
            try:
                with open(os.path.join(directory, "cpu.max")) as f:
                    quota, period = f.read().split()
            except OSError:
                continue
            if quota != "max":
                cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


class WorkerPool:
    """size threads that run tasks, each task (door, fn) in the namespace behind door (None: the exporter's own)."""

    def __init__(self, size: int, namespaces: bool):
        self.size = size
        self._own = None
        self._executor = None
        if size > 1 or namespaces:  # namespaces need threads of their own to enter them, even one
            self._own = Door(os.stat("/proc/thread-self/ns/net").st_ino,
                             os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
            self._executor = ThreadPoolExecutor(size, thread_name_prefix="collect")
        self._where = threading.local()

    def run(self, tasks: Sequence[Tuple[Optional[Door], Callable]]) -> List[Tuple[bool, object]]:
        """(True, fn()) or (False, the exception) of every task, in the order given."""
        if self._executor is None:
            return [self.call(fn) for _, fn in tasks]
        futures = [self._executor.submit(self._in, door or self._own, fn) for door, fn in tasks]
        return [future.result() for future in futures]

    def _in(self, door: Door, fn: Callable) -> Tuple[bool, object]:
        if getattr(self._where, "inode", self._own.inode) != door.inode:
            if _libc.setns(door.fd, CLONE_NEWNET) != 0:  # refused: the thread stays where it was
                code = ctypes.get_errno()
                return False, EnterError(code, os.strerror(code))
            self._where.inode = door.inode
        return self.call(fn)

    @staticmethod
    def call(fn: Callable) -> Tuple[bool, object]:
        try:
            return True, fn()
        except Exception as e:  # the caller decides what a failure costs
            return False, e

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            os.close(self._own.fd)
