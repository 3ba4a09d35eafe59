"""systemd integration without systemd: a fake NOTIFY_SOCKET, socket activation, the journal handler switch."""

import os
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request

import pytest

from sockdiag_exporter import logsetup, systemd_support
from sockdiag_exporter.config import Config
from sockdiag_exporter.service import Service


class Notifications:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, tmp_path):
        self.path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(10)

    def next(self) -> list:
        return self.sock.recv(4096).decode().split("\n")

    def until(self, state: str, limit: int = 50) -> list:
        seen = []
        for _ in range(limit):
            message = self.next()
            seen.append(message)
            if state in message:
                return seen
        raise AssertionError(f"{state} never came: {seen}")


def start(args, env):
    return subprocess.Popen([sys.executable, "-m", "sockdiag_exporter", *args], env=dict(os.environ, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def test_ready_status_watchdog_reload_and_stopping(tmp_path):
    note = Notifications(tmp_path)
    config = tmp_path / "config.yml"
    config.write_text("collectors: {sctp: false}\n")
    proc = start(["--web.listen-address=127.0.0.1:19981", f"--config.file={config}", "--collector.disable-defaults",
                  "--collector.unix"], {"NOTIFY_SOCKET": note.path, "WATCHDOG_USEC": "400000"})
    try:
        ready = note.next()
        assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready
        assert urllib.request.urlopen("http://127.0.0.1:19981/", timeout=5).status == 200  # listening when READY
        urllib.request.urlopen("http://127.0.0.1:19981/metrics", timeout=5).read()
        pings = note.until("WATCHDOG=1")
        status = [line for line in pings[-1] if line.startswith("STATUS=")]
        assert status and "sockets" in status[0] and "collectors ok" in status[0]
        note.until("WATCHDOG=1")  # and again: the pings go on (every 0.2 s: half of WATCHDOG_USEC)
        proc.send_signal(signal.SIGHUP)
        note.until("RELOADING=1")
        assert any(line.startswith("STATUS=") for line in note.until("READY=1")[-1])
        proc.send_signal(signal.SIGTERM)
        note.until("STOPPING=1")
        assert proc.wait(5) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_socket_activation_serves_the_passed_socket(tmp_path):
    activate = subprocess.Popen(
        ["systemd-socket-activate", "-l", "127.0.0.1:19982", "-E", "PYTHONPATH", sys.executable, "-m",
         "sockdiag_exporter", "--web.listen-address=127.0.0.1:1", "--collector.disable-defaults",
         "--collector.unix"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        body = None
        for _ in range(100):
            try:
                body = urllib.request.urlopen("http://127.0.0.1:19982/metrics", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        assert body and b"sockdiag_sockets" in body  # served although the configured address is port 1
    finally:
        activate.send_signal(signal.SIGTERM)
        _, stderr = activate.communicate(timeout=10)
    assert "listening on the socket systemd passed" in stderr


def test_no_systemd_means_no_notifications(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd_support.notify("READY=1") is False
    assert systemd_support.supervised() is False
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd_support.watchdog_interval() is None  # meant for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd_support.watchdog_interval() == 5.0
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert systemd_support.listen_socket() is None and "LISTEN_FDS" not in os.environ


def test_journal_handler_only_when_stderr_is_the_journal(monkeypatch, capfd):
    stat = os.fstat(2)
    fake = types.ModuleType("systemd.journal")

    class JournalHandler(__import__("logging").Handler):
        def __init__(self, **fields):
            super().__init__()
            self.fields = fields

        def emit(self, record):
            pass

    fake.JournalHandler = JournalHandler
    monkeypatch.setitem(sys.modules, "systemd", types.ModuleType("systemd"))
    monkeypatch.setitem(sys.modules, "systemd.journal", fake)
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    handler = systemd_support.journal_handler()
    assert isinstance(handler, JournalHandler) and handler.fields == {"SYSLOG_IDENTIFIER": "sockdiag-exporter"}
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino + 1}")  # stderr redirected elsewhere
    assert systemd_support.journal_handler() is None
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # systemd-python not installed
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    assert systemd_support.journal_handler() is None
    logsetup.setup("info", "logfmt")
    __import__("logging").getLogger("t").warning("collector x failed", extra={"COLLECTOR": "x"})
    assert 'msg="collector x failed" collector=x' in capfd.readouterr().err


def test_watchdog_is_withheld_while_a_collection_hangs():
    service = Service(Config(), lambda: (Config(), None))

    class Answering:
        def probe(self):
            return True

    assert service.health(Answering(), 5.0) is None
    service.scraper.collecting_since = time.monotonic() - 60
    assert "a collection has been running for 60 s" == service.health(Answering(), 5.0)
    service.scraper.collecting_since = None

    class Silent:
        def probe(self):
            return False

    assert "does not answer" in service.health(Silent(), 5.0)


@pytest.mark.parametrize("usec", ["abc", "0", "-5"])
def test_bad_watchdog_values_disable_it(monkeypatch, usec):
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd_support.watchdog_interval() is None
