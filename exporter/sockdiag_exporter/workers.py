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
from collections import deque
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


class _Task:
    """One task for the workers: pending until a worker (or, taken back, its sharer) runs it."""

    __slots__ = ("door", "fn", "started", "result", "done")

    def __init__(self, door: Door, fn: Callable):
        self.door, self.fn = door, fn
        self.started = False
        self.result = None
        self.done = threading.Event()


class WorkerPool:
    """size threads that run tasks, each task (door, fn) in the namespace behind door (None: the exporter's own).

    One queue: a collection's tasks at its back, in the order given (the heaviest first); tasks shared from a
    running task (share: a collector's parallel dumps) at its front, so that an idle worker takes them before the
    next collector, and a sharer waiting for its parts helps with the queue. Measured (2 cores, 100k sockets, full
    scrape against the single-threaded TCP floor, one bench run each): shared parts at the queue's back 1.19× (a
    noisy run), at its front 1.22× (the IPv4 worker then waited for the IPv6 part), waiting sharers helping
    1.11×."""

    def __init__(self, size: int, namespaces: bool):
        self.size = size
        self._own = None
        self._queue = None
        if size > 1 or namespaces:  # namespaces need threads of their own to enter them, even one
            self._own = Door(os.stat("/proc/thread-self/ns/net").st_ino,
                             os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
            self._queue: deque = deque()
            self._ready = threading.Condition()
            self._closed = False
            self._threads: List[threading.Thread] = []
        self._where = threading.local()

    def run(self, tasks: Sequence[Tuple[Optional[Door], Callable]]) -> List[Tuple[bool, object]]:
        """(True, fn()) or (False, the exception) of every task, in the order given."""
        if self._queue is None:
            return [self.call(fn) for _, fn in tasks]
        queued = self._put([_Task(door or self._own, fn) for door, fn in tasks], front=False)
        for task in queued:
            task.done.wait()
        return [task.result for task in queued]

    def share(self, fns: Sequence[Callable]) -> List[Tuple[bool, object]]:
        """(True, fn()) or (False, the exception) of every fn, in order: the first run here, the others offered to
        the idle workers first, in this thread's namespace. When this thread is done with the first, it takes back
        what no worker has started, and while a worker runs the rest it runs other tasks of this namespace from the
        queue (a waiting worker is a lost core). A task that shares therefore never waits for a worker that is not
        running its part (no deadlock, however many share at once), and no thread is started for it."""
        if self._queue is None or len(fns) < 2:
            return [self.call(fn) for fn in fns]
        door = getattr(self._where, "door", self._own)
        queued = self._put([_Task(door, fn) for fn in fns[1:]], front=True)
        results = [self.call(fns[0])]
        for task in queued:
            while True:
                with self._ready:
                    if not task.started:  # taken back
                        self._queue.remove(task)
                        task.started = True
                        other = task
                    elif task.done.is_set():
                        break
                    else:
                        other = self._take(door)
                        if other is None:
                            self._ready.wait()
                            continue
                self._run(other)
            results.append(task.result)
        return results

    def _put(self, tasks: List[_Task], front: bool) -> List[_Task]:
        with self._ready:
            if front:
                self._queue.extendleft(reversed(tasks))
            else:
                self._queue.extend(tasks)
            # workers start on first use, as many as there are tasks for, up to size
            for _ in range(min(len(self._queue), self.size - len(self._threads))):
                thread = threading.Thread(target=self._work, name=f"collect_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._ready.notify_all()  # idle workers, and sharers waiting that may help
        return tasks

    def _take(self, door: Door) -> Optional[_Task]:
        """(With the lock held) the first queued task of door's namespace, started; None when there is none."""
        for task in self._queue:
            if task.door.inode == door.inode:
                self._queue.remove(task)
                task.started = True
                return task
        return None

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:  # closed, and nothing left to run
                    return
                task = self._queue.popleft()
                task.started = True
            self._run(task)

    def _run(self, task: _Task) -> None:
        try:
            task.result = self._in(task.door, task.fn)
        except BaseException as e:  # handed to whoever waits for it, never lost with the thread
            task.result = (False, e)
        finally:
            task.done.set()
            with self._ready:
                self._ready.notify_all()  # a sharer waiting for it

    def _in(self, door: Door, fn: Callable) -> Tuple[bool, object]:
        if getattr(self._where, "door", self._own).inode != door.inode:
            if _libc.setns(door.fd, CLONE_NEWNET) != 0:  # refused: the thread stays where it was
                code = ctypes.get_errno()
                return False, EnterError(code, os.strerror(code))
            self._where.door = door
        return self.call(fn)

    @staticmethod
    def call(fn: Callable) -> Tuple[bool, object]:
        try:
            return True, fn()
        except Exception as e:  # the caller decides what a failure costs
            return False, e

    def close(self) -> None:
        if self._queue is not None:
            with self._ready:
                self._closed = True
                self._ready.notify_all()
            os.close(self._own.fd)
