"""The daemon: builds the collection pipeline from a Config, serves HTTP, reloads on SIGHUP, stops on SIGTERM."""

import logging
import signal
import threading
from typing import Callable, Optional

from prometheus_client import CollectorRegistry, ProcessCollector

from . import __version__, logsetup
from .collectors.base import Context, Options
from .config import Config, ConfigError
from .diag.decoder import Detail, port_tables
from .diag.netlink import DiagSocket
from .scrape import RegistryAdapter, Scraper
from .web import App, Server

log = logging.getLogger("sockdiag_exporter")


def build_options(config: Config) -> Options:
    groups = list(config.port_groups.items())
    detail = Detail(
        config.histograms.buckets if config.histograms.enabled else (),
        port_tables([(g.local, g.remote) for _, g in groups]) if groups else None,
    )
    return Options(detail, tuple(name for name, _ in groups), frozenset(config.memory.collectors),
                   config.listeners.max_series)


def build_context(config: Config) -> Context:
    nl = config.netlink
    diag = DiagSocket(nl.receive_buffer_bytes, nl.timeout_seconds, nl.dump_retries)
    return Context(diag, nl.recheck_unsupported_seconds, build_options(config))


class Service:
    """One running exporter."""

    def __init__(self, config: Config, config_file: Optional[str], reload_config: Callable[[], Config]):
        self.config = config
        self.config_file = config_file
        self._reload_config = reload_config
        self.scraper = Scraper(config.enabled_collectors(), build_context(config), config.series_budget)
        self._wake = threading.Event()
        self._stop = False
        self._reload = False

    def run(self) -> int:
        logsetup.setup(self.config.log.level, self.config.log.format)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RegistryAdapter(self.scraper))
        ProcessCollector(registry=registry)
        self.app = App(registry, self.config.web.telemetry_path)
        try:
            server = Server(self.config.web.listen_address, self.app)
        except OSError as e:
            log.error("cannot listen on %s: %s", self.config.web.listen_address, e.strerror or e)
            return 1
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        server.start()
        log.info("sockdiag_exporter %s listening on %s, metrics at %s; collectors: %s", __version__,
                 self.config.web.listen_address, self.config.web.telemetry_path,
                 ", ".join(c.name for c in self.scraper.collectors) or "none")
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                break
            if self._reload:
                self._reload = False
                self.reload()
        log.info("stopping")
        server.shutdown()
        server.server_close()
        self.scraper.ctx.diag.close()
        return 0

    def _on_stop(self, signum, frame):
        self._stop = True
        self._wake.set()

    def _on_reload(self, signum, frame):
        self._reload = True
        self._wake.set()

    def reload(self) -> bool:
        """Re-read the configuration; an invalid one is refused and the running one kept."""
        try:
            new = self._reload_config()
        except ConfigError as e:
            log.error("reload refused, keeping the running configuration: %s", e)
            return False
        if new.web.listen_address != self.config.web.listen_address:
            log.warning("web.listen_address changed to %s: restart to apply it", new.web.listen_address)
        logsetup.setup(new.log.level, new.log.format)
        self.scraper.ctx = build_context(new)
        self.scraper.collectors = new.enabled_collectors()
        self.scraper.series_budget = new.series_budget
        self.app.telemetry_path = new.web.telemetry_path
        self.config = new
        log.info("configuration reloaded; collectors: %s", ", ".join(c.name for c in self.scraper.collectors))
        return True
