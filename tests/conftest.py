"""Shared fixtures. Tests are laid out by layer:

- unit/   no root, no kernel state: decoder against a reference, golden replays, config, parsers, shipped files;
- kernel/ real sockets in fresh network namespaces, compared with ss, nstat and /proc;
- daemon/ the exporter as a process: HTTP, signals, systemd;
- e2e/    real Prometheus, packages, browser.

Every layer but unit/ needs root (it creates network namespaces); without root those tests are skipped, each with
that reason.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import Daemon, NetNS  # noqa: E402

ROOT_LAYERS = ("kernel", "daemon", "e2e")
NEEDS_ROOT = "needs root: it creates network namespaces (run README's test command, which runs pytest as root)"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=NEEDS_ROOT)
    for item in items:
        layer = os.path.relpath(str(item.fspath), os.path.dirname(__file__)).split(os.sep)[0]
        if layer in ROOT_LAYERS:
            item.add_marker(skip)


@pytest.fixture
def netns():
    """A fresh network namespace with lo up; deleted, with every socket kept in ns.keep, after the test."""
    ns = NetNS()
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def daemon(netns):
    started = []

    def start(*args, tls=None, wrap=()):
        d = Daemon(netns, *args, tls=tls, wrap=wrap)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
