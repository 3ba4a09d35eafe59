"""Single flight: concurrent callers of one function share the call in flight instead of starting their own."""

import threading


class SingleFlight:
    """Concurrent callers share one in-flight call; a call that starts after it finished runs anew."""

    def __init__(self, fn):
        self._fn = fn
        self._lock = threading.Lock()
        self._flight = None

    def __call__(self):
        with self._lock:
            flight = self._flight
            leader = flight is None
            if leader:
                flight = self._flight = _Flight()
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
    __slots__ = ("done", "result", "error")

    def __init__(self):
        self.done = threading.Event()
        self.result = None
        self.error = None
