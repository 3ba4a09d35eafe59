"""Single flight: concurrent callers of one function share the call in flight instead of starting their own."""

import threading


class SingleFlight:
    """Concurrent callers share one in-flight call; a call that starts after it finished runs anew."""

    def __init__(self, fn):
        self._fn = fn
        self._lock = threading.Lock()
        self._flight = None

    def callers(self) -> int:
        """How many callers share the flight in the air (0 when none is)."""
        with self._lock:
            return self._flight.callers if self._flight else 0

    def __call__(self):
        with self._lock:
            flight = self._flight
            leader = flight is None
            if leader:
                flight = self._flight = _Flight()
            flight.callers += 1
        if leader:
            try:
                flight.result = self._fn()
            except BaseException as e:  # handed to every waiter
                flight.error = e
            finally:
                with self._lock:
                    self._flight = None
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.result


class _Flight:
    __slots__ = ("done", "result", "error", "callers")

    def __init__(self):
        self.callers = 0
        self.done = threading.Event()
        self.result = None
        self.error = None
