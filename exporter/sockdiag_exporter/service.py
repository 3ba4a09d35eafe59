"""The daemon: builds the collection pipeline from a Config, serves HTTP, reloads on SIGHUP, stops on SIGTERM."""

import ctypes
import logging
import os
import signal
import threading
import time
from typing import Callable, Optional, Tuple

from prometheus_client import CollectorRegistry, ProcessCollector

from . import __version__, logsetup, systemd_support
from .collectors.base import Context, Options
from .config import Config, ConfigError
from .cgroups import CgroupMap, default_mount, unavailable_reason
from .diag import constants as c
from .diag.decoder import Detail, port_tables
from .diag.netlink import DiagSocket
from .namespaces import NamespaceSet
from .scrape import RegistryAdapter, Scraper
from .web import Limits, Server
from .webapp import App
from .webconfig import NO_SECURITY, WebSecurity

log = logging.getLogger("sockdiag_exporter")

STATUS_INTERVAL = 10.0  # seconds between STATUS= updates (and health checks) when no watchdog asks for more


def build_cgroups(config: Config) -> Optional[CgroupMap]:
    """The cgroup map when attribution is configured and trustworthy here; said once when it is not."""
    cg = config.cgroups
    if not cg.enabled:
        return None
    mount = cg.mount or default_mount()
    reason = unavailable_reason(mount)
    if reason:
        log.warning("cgroup attribution is off: %s", reason)
        return None
    return CgroupMap(mount, cg.depth)


def build_options(config: Config, cgroups: Optional[CgroupMap] = None) -> Options:
    groups = list(config.port_groups.items())
    detail = Detail(
        config.histograms.buckets if config.histograms.enabled else (),
        port_tables([(g.local, g.remote) for _, g in groups]) if groups else None,
        c.INET_DIAG_CGROUP_ID if cgroups else 0,
    )
    return Options(detail, tuple(name for name, _ in groups), frozenset(config.memory.collectors),
                   config.listeners.max_series, cgroups, config.cgroups.max_series)


def build_context(config: Config, cgroups: Optional[CgroupMap] = None) -> Context:
    nl = config.netlink
    diag = DiagSocket(nl.receive_buffer_bytes, nl.timeout_seconds, nl.dump_retries)
    return Context(diag, nl.recheck_unsupported_seconds, build_options(config, cgroups))


def build_scraper(config: Config) -> Scraper:
    cgroups = build_cgroups(config)
    ns = config.namespaces
    namespaces = NamespaceSet(ns.named, ns.processes, ns.include, ns.exclude, ns.max_namespaces,
                              lambda: build_context(config, cgroups)) if ns.enabled else None
    features = dict(namespaces.enabled) if namespaces else {}
    if config.cgroups.enabled:
        features["cgroup_attribution"] = cgroups is not None
    scraper = Scraper(config.enabled_collectors(), build_context(config, cgroups), config.series_budget, namespaces,
                      features)
    scraper.sparse = ns.sparse
    return scraper


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas: by default each of up to 8 x cores threads may get its own, and a burst of
    concurrent scrapes (one thread each) leaves them holding freed memory, which shows as RSS growth."""
    try:
        ctypes.CDLL(None).mallopt(-8, arenas)  # M_ARENA_MAX; not glibc: nothing to do
    except (OSError, AttributeError):
        pass


class Service:
    """One running exporter."""

    def __init__(self, config: Config, reload_config: Callable[[], Tuple[Config, WebSecurity]],
                 security: WebSecurity = NO_SECURITY):
        self.config = config
        self.security = security
        self._reload_config = reload_config
        self.scraper = build_scraper(config)
        self._wake = threading.Event()
        self._stop = False
        self._reload = False

    def run(self) -> int:
        logsetup.setup(self.config.log.level, self.config.log.format)
        limit_malloc_arenas()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RegistryAdapter(self.scraper))
        ProcessCollector(registry=registry)
        self.app = App(registry, self.config.web.telemetry_path)
        activated = systemd_support.listen_socket()
        try:
            web = self.config.web
            server = Server(web.listen_address, self.app, activated, self.security, limits=Limits.from_config(web))
        except OSError as e:
            log.error("cannot listen on %s: %s", self.config.web.listen_address, e.strerror or e)
            return 1
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        server.start()
        where = f"the socket systemd passed ({server.socket.getsockname()[:2]})" if activated else \
            self.config.web.listen_address
        log.info("sockdiag_exporter %s listening on %s, metrics at %s; collectors: %s", __version__, where,
                 self.config.web.telemetry_path, ", ".join(c.name for c in self.scraper.collectors) or "none")
        systemd_support.notify("READY=1", f"STATUS={self.status()}", f"MAINPID={os.getpid()}")
        watchdog = systemd_support.watchdog_interval()
        tick = min(watchdog or STATUS_INTERVAL, STATUS_INTERVAL) if systemd_support.supervised() else None
        unhealthy = None
        while True:
            if not self._wake.wait(tick):
                problem = self.health(server, watchdog)
                if problem is None:
                    systemd_support.notify(*(["WATCHDOG=1"] if watchdog else []), f"STATUS={self.status()}")
                elif problem != unhealthy:
                    log.error("not pinging the watchdog: %s", problem)
                unhealthy = problem
                continue
            self._wake.clear()
            if self._stop:
                break
            if self._reload:
                self._reload = False
                systemd_support.notify("RELOADING=1")
                self.reload(server)
                systemd_support.notify("READY=1", f"STATUS={self.status()}")
        log.info("stopping")
        systemd_support.notify("STOPPING=1")
        server.shutdown()
        server.server_close()
        self.scraper.ctx.diag.close()
        return 0

    def status(self) -> str:
        """A one-line summary for systemctl status."""
        s = self.scraper
        if not s.last_duration:
            return "serving, no scrape yet"
        failing = f"{s.last_failed} of {len(s.collectors)} collectors failing" if s.last_failed else \
            f"{len(s.collectors)} collectors ok"
        return f"last scrape {s.last_duration:.3f}s, {int(s.last_sockets)} sockets, {failing}"

    def health(self, server: Server, watchdog: Optional[float]) -> Optional[str]:
        """None if the exporter works (the HTTP server answers; no collection hangs), else what is wrong."""
        since = self.scraper.collecting_since
        limit = max(2 * (watchdog or STATUS_INTERVAL), 2 * self.config.netlink.timeout_seconds)
        if since is not None and time.monotonic() - since > limit:
            return f"a collection has been running for {time.monotonic() - since:.0f} s"
        if not server.probe():
            return "the HTTP server does not answer on its own socket"
        return None

    def _on_stop(self, signum, frame):
        self._stop = True
        self._wake.set()

    def _on_reload(self, signum, frame):
        self._reload = True
        self._wake.set()

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
        fresh = build_scraper(new)  # the old diag sockets close when a collection in flight lets go of them
        self.scraper.ctx, self.scraper.namespaces = fresh.ctx, fresh.namespaces
        self.scraper.collectors = fresh.collectors
        self.scraper.series_budget = fresh.series_budget
        self.scraper.features = fresh.features
        self.scraper.sparse = fresh.sparse
        self.app.telemetry_path = new.web.telemetry_path
        if server is not None:
            server.secure(security)
            server.limits = Limits.from_config(new.web)
        self.config, self.security = new, security
        log.info("configuration reloaded; collectors: %s", ", ".join(c.name for c in self.scraper.collectors))
        return True
