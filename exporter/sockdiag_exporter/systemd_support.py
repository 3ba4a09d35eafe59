"""systemd integration: readiness, status and watchdog notifications, socket activation, journal logging.

The notify and socket-activation protocols are one datagram and a few environment variables; they are spoken here
directly, so that a Type=notify unit works where systemd-python is not installed (a pip install in a venv). The
journal handler, with structured fields, comes from systemd-python when it is there.
"""

import logging
import os
import socket
from typing import Optional

SD_LISTEN_FDS_START = 3


def supervised() -> bool:
    """True when a service manager listens for notifications."""
    return bool(os.environ.get("NOTIFY_SOCKET"))


def notify(*states: str) -> bool:
    """Send sd_notify(3) state lines (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall("\n".join(states).encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> Optional[float]:
    """Seconds between watchdog pings: half of WATCHDOG_USEC, or None when no watchdog is set for this process."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", "0"))
        pid = int(os.environ.get("WATCHDOG_PID", os.getpid()))
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2e6


def listen_socket() -> Optional[socket.socket]:
    """The first socket systemd passed to this process (socket activation), or None.

    The LISTEN_* variables are removed so that they do not leak into child processes.
    """
    try:
        mine = int(os.environ.get("LISTEN_PID", "0")) == os.getpid()
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not mine or count < 1:
        return None
    for extra in range(SD_LISTEN_FDS_START + 1, SD_LISTEN_FDS_START + count):
        os.close(extra)  # one listener is all this exporter serves
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.set_inheritable(False)
    return sock


def journal_handler() -> Optional[logging.Handler]:
    """A systemd-python JournalHandler when stderr is connected to the journal (JOURNAL_STREAM), else None."""
    try:
        device, inode = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        stat = os.fstat(2)
    except (ValueError, OSError):
        return None
    if (stat.st_dev, stat.st_ino) != (device, inode):
        return None
    try:
        from systemd.journal import JournalHandler
    except ImportError:  # journald still reads stderr: plain lines
        return None
    return JournalHandler(SYSLOG_IDENTIFIER="sockdiag-exporter")
