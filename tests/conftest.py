import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import Daemon, NetNS  # noqa: E402


@pytest.fixture
def netns():
    """A fresh network namespace with lo up; deleted, with every socket kept in ns.keep, after the test."""
    if os.geteuid() != 0:
        pytest.fail("the real-kernel tests create network namespaces: run them as root (see README)")
    ns = NetNS()
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def daemon(netns):
    started = []

    def start(*args, tls=None):
        d = Daemon(netns, *args, tls=tls)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
