"""The daemon: builds the collection pipeline from a Config, serves HTTP, reloads on SIGHUP, stops on SIGTERM."""

import ctypes
import logging
import os
import select
import signal
import socket
import time
from typing import Callable, Optional, Set, Tuple

from prometheus_client import CollectorRegistry, ProcessCollector

from . import __version__, logsetup, systemd_support
from .config import Config, ConfigError
from .diag.netlink import DiagStats
from .landing import LandingPage
from .plan import build_plan
from .scrape import IN_NETNS, RegistryAdapter, Scraper
from .web import Limits, Server
from .webapp import App
from .webconfig import NO_SECURITY, WebSecurity

log = logging.getLogger("sockdiag_exporter")

STATUS_INTERVAL = 10.0  # seconds between STATUS= updates (and health checks) when no watchdog asks for more


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas: by default each of up to 8 x cores threads may get its own, and a burst of
    concurrent scrapes (one thread each) leaves them holding freed memory, which shows as RSS growth."""
    try:
        ctypes.CDLL(None).mallopt(-8, arenas)  # M_ARENA_MAX; not glibc: nothing to do
    except (OSError, AttributeError):
        pass


class Signals:
    """The signals the main thread waits for, delivered through a wakeup socket.

    A signal may land on any thread, and Python runs its handler only when the main thread next executes
    bytecode: a main thread blocked on a lock slept through a SIGHUP that an HTTP thread received until the next
    signal came (found by the reload test, 1 reload in about 30 lost). The C-level handler also writes the signal's
    number to the wakeup socket, which wakes the main thread's select() whichever thread the signal landed on.
    """

    def __init__(self, signums):
        self._read, write = socket.socketpair()
        self._read.setblocking(False)
        write.setblocking(False)
        self._write = write  # kept open for as long as the wakeup fd is set
        signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        for signum in signums:
            signal.signal(signum, lambda number, frame: None)  # handled: the number arrives on the socket

    def wait(self, timeout: Optional[float]) -> Set[int]:
        """The signals received (several of one kind count once); empty after timeout seconds without any."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        received = set()
        while ready:
            try:
                received.update(self._read.recv(64))
            except BlockingIOError:
                break
        return received


class Service:
    """One running exporter."""

    def __init__(self, config: Config, reload_config: Callable[[], Tuple[Config, WebSecurity]],
                 security: WebSecurity = NO_SECURITY, config_file: str = ""):
        self.config = config
        self.security = security
        self.config_file = config_file
        self.started = time.time()
        self._reload_config = reload_config
        logsetup.setup(config.log.level, config.log.format)  # before building the plan, which may warn
        stats = DiagStats()
        self.scraper = Scraper(build_plan(config, stats, config_file), stats)

    def run(self) -> int:
        limit_malloc_arenas()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RegistryAdapter(self.scraper))
        ProcessCollector(registry=registry)
        self.app = App(registry, self.config.web.telemetry_path, LandingPage(self.scraper, self.started))
        activated = systemd_support.listen_socket()
        try:
            web = self.config.web
            server = Server(web.listen_address, self.app, activated, self.security, limits=Limits.from_config(web))
        except OSError as e:
            log.error("cannot listen on %s: %s", self.config.web.listen_address, e.strerror or e)
            return 1
        signals = Signals((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
        server.start()
        where = f"the socket systemd passed ({server.socket.getsockname()[:2]})" if activated else \
            self.config.web.listen_address
        log.info("sockdiag_exporter %s listening on %s, metrics at %s; collectors: %s", __version__, where,
                 self.config.web.telemetry_path, ", ".join(c.name for c in self.scraper.plan.collectors) or "none")
        systemd_support.notify("READY=1", f"STATUS={self.status()}", f"MAINPID={os.getpid()}")
        watchdog = systemd_support.watchdog_interval()
        tick = min(watchdog or STATUS_INTERVAL, STATUS_INTERVAL) if systemd_support.supervised() else None
        unhealthy = None
        while True:
            received = signals.wait(tick)
            if not received:
                problem = self.health(server, watchdog)
                if problem is None:
                    systemd_support.notify(*(["WATCHDOG=1"] if watchdog else []), f"STATUS={self.status()}")
                elif problem != unhealthy:
                    log.error("not pinging the watchdog: %s", problem)
                unhealthy = problem
                continue
            if received & {signal.SIGTERM, signal.SIGINT}:
                break
            systemd_support.notify("RELOADING=1")  # SIGHUP (several at once make one reload)
            self.reload(server)
            systemd_support.notify("READY=1", f"STATUS={self.status()}")
        log.info("stopping")
        systemd_support.notify("STOPPING=1")
        server.shutdown()
        server.server_close()
        self.scraper.close()
        return 0

    def status(self) -> str:
        """A one-line summary for systemctl status."""
        last = self.scraper.last
        if last is None:
            return "serving, no scrape yet"
        count = len(last.plan.collectors)
        failing = len({name.partition(IN_NETNS)[0] for name in last.errors})
        health = f"{failing} of {count} collectors failing" if failing else f"{count} collectors ok"
        return f"last scrape {last.duration:.3f}s, {last.sockets} sockets, {health}"

    def health(self, server: Server, watchdog: Optional[float]) -> Optional[str]:
        """None if the exporter works (the HTTP server answers; no collection hangs), else what is wrong."""
        since = self.scraper.collecting_since
        limit = max(2 * (watchdog or STATUS_INTERVAL), 2 * self.config.netlink.timeout_seconds)
        if since is not None and time.monotonic() - since > limit:
            return f"a collection has been running for {time.monotonic() - since:.0f} s"
        if not server.probe():
            return "the HTTP server does not answer on its own socket"
        return None

    def reload(self, server: Optional[Server] = None) -> bool:
        """Re-read the configuration and the web configuration; an invalid one is refused and the running kept."""
        try:
            new, security = self._reload_config()
        except ConfigError as e:
            log.error("reload refused, keeping the running configuration: %s", e)
            return False
        if new.web.listen_address != self.config.web.listen_address:
            log.warning("web.listen_address changed to %s: restart to apply it", new.web.listen_address)
        logsetup.setup(new.log.level, new.log.format)
        self.scraper.swap(build_plan(new, self.scraper.stats, self.config_file))
        self.app.telemetry_path = new.web.telemetry_path
        if server is not None:
            server.secure(security)
            server.limits = Limits.from_config(new.web)
        self.config, self.security = new, security
        log.info("configuration reloaded; collectors: %s", ", ".join(c.name for c in self.scraper.plan.collectors))
        return True
