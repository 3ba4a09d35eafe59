"""Basic auth and rate limits of the HTTP server: what a client must show, and how often it may ask.

Both answer on the event-loop thread without blocking it. bcrypt (about 70 ms a check at cost 10) runs in a
small pool whose queue is bounded: a brute forcer gets 429 beyond it, and a legitimate scraper never waits for it
because verified credentials are remembered in a table only successes enter.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional

BCRYPT_THREADS = min(2, max(1, (os.cpu_count() or 1) - 1))  # a core left for the event loop and collection
BCRYPT_NICE = 19  # bcrypt threads yield the CPU to scrapes: with a brute forcer keeping the pool busy, legitimate
# scrapes took 30x their idle time at equal priority on 2 cores
BCRYPT_QUEUE = 8  # checks waiting or running; beyond it, 429 (at cost 10, 8 checks wait at most ~0.3 s)
REMEMBERED = 256  # credentials remembered per table (successes, failures)


class Busy(Exception):
    """Too many credential checks are waiting: answer 429."""


def _bcrypt():
    import bcrypt  # optional: webconfig refuses basic_auth_users without it

    return bcrypt


def _check(password: bytes, hashed: bytes) -> bool:
    try:
        return _bcrypt().checkpw(password, hashed.replace(b"$2y$", b"$2b$", 1))
    except ValueError:  # e.g. a password beyond bcrypt's 72 bytes (bcrypt >= 5 refuses it)
        return False


def _copy(keys) -> list:
    """The keys of a table the event-loop thread may be changing meanwhile (a reload runs in the main thread)."""
    for _ in range(10):
        try:
            return list(keys or ())
        except RuntimeError:  # mutated during iteration: again
            continue
    return []


def _lower_priority():
    """Nice this thread (Linux applies nice per thread). Where a seccomp filter refuses setpriority (the unit's
    ~@resources), the pool runs at normal priority and its size alone bounds it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_NICE)
    except OSError:
        pass


def parse_basic(header: Optional[str]):
    """(user, password) as bytes from an Authorization header, or None. The scheme is case-insensitive (RFC 7617)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(token.strip(), validate=True).partition(b":")
    except (ValueError, binascii.Error):
        return None
    return (user, password) if colon else None


def dummy_hash(users: Dict[str, bytes]) -> bytes:
    """A hash of a random password at the cost the configured users' hashes have: an unknown user costs what a
    known one does, so answer times do not tell which names exist."""
    costs = [int(m.group(1)) for h in users.values() for m in [re.match(rb"\$2[abxy]?\$(\d\d)\$", h)] if m]
    cost = max(set(costs), key=costs.count) if costs else 10
    return _bcrypt().hashpw(os.urandom(16).hex().encode(), _bcrypt().gensalt(rounds=cost))


class Authenticator:
    """Checks HTTP basic credentials against bcrypt hashes, remembering recent answers."""

    def __init__(self, users: Dict[str, bytes], remember: int = REMEMBERED, threads: int = BCRYPT_THREADS,
                 queue: int = BCRYPT_QUEUE, verified: Optional["OrderedDict[bytes, None]"] = None):
        """verified: the successes of the authenticator this one replaces (a reload); a key holds the hash, so
        those of changed or removed users never match again."""
        self.users = {name.encode(): hashed for name, hashed in users.items()}
        self._dummy = dummy_hash(users) if users else b""
        self.verified: "OrderedDict[bytes, None]" = OrderedDict.fromkeys(_copy(verified))  # successes only: a
        # brute forcer cannot push them out
        self._bad: "OrderedDict[bytes, None]" = OrderedDict()
        self._remember = remember
        self._queue = queue
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="bcrypt", initializer=_lower_priority) \
            if users else None
        self._pending: Dict[bytes, asyncio.Future] = {}  # the same credentials checked once at a time

    def _lookup(self, user: bytes) -> Optional[bytes]:
        """The user's hash, comparing with every name in constant time (no early exit on a match)."""
        found = None
        for name, hashed in self.users.items():
            if hmac.compare_digest(name, user):
                found = hashed
        return found

    async def check(self, header: Optional[str]) -> bool:
        """True if header holds a known user's password; raises Busy when bcrypt's queue is full."""
        creds = parse_basic(header)
        if creds is None or not self.users:
            return False
        user, password = creds
        hashed = self._lookup(user)
        known = hashed is not None
        hashed = hashed if known else self._dummy
        key = hashlib.sha256(b"\0".join((user, password, hashed))).digest()
        if key in self.verified:
            self.verified.move_to_end(key)
            return known
        if key in self._bad:
            self._bad.move_to_end(key)
            return False
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self._queue:
                raise Busy
            pending = self._pending[key] = asyncio.get_running_loop().run_in_executor(
                self._pool, _check, password, hashed)
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        ok = await asyncio.shield(pending) and known
        table = self.verified if ok else self._bad
        table[key] = None
        while len(table) > self._remember:
            table.popitem(last=False)
        return ok

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class RateLimiter:
    """A token bucket: burst requests at once, then one per interval."""

    def __init__(self, interval: float, burst: int, clock=time.monotonic):
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def allow(self) -> bool:
        if not self.interval:
            return True  # a burst of 0 with an interval refuses everything, as Go's rate.Limiter does
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) / self.interval)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class ClientRateLimiter:
    """The configured bucket per client address (the least recently seen forgotten beyond `clients`), under a
    global bucket `ceiling` times as large and fast. A client that floods is refused by its own bucket before it
    takes a global token, so it cannot use up the others' share."""

    def __init__(self, interval: float, burst: int, clients: int = 4096, ceiling: int = 8, clock=time.monotonic):
        self.interval, self.burst, self._clock = interval, burst, clock
        self._clients: "OrderedDict[str, RateLimiter]" = OrderedDict()
        self._max_clients = clients
        self._global = RateLimiter(interval / ceiling, burst * ceiling, clock)

    def allow(self, client: str) -> bool:
        if not self.interval:
            return True
        bucket = self._clients.get(client)
        if bucket is None:
            bucket = self._clients[client] = RateLimiter(self.interval, self.burst, self._clock)
            if len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        return bucket.allow() and self._global.allow()
