"""One process of the socket population (the fd limit is per process), run inside the benchmark namespace.

    python -m bench.worker KIND COUNT PORT [ARGS...]

Prints "ready" once its sockets exist, then holds them until standard input closes.
KIND: tcp (COUNT established connections, v4 or v6; with a fifth argument N, IPv4 workers send half of them to N
other destinations), close_wait (COUNT pairs: client FIN_WAIT2 with its fd kept,
server CLOSE_WAIT), listeners (COUNT listeners from PORT up, each with a few un-accepted connections),
udp (COUNT sockets, some with queued datagrams), unix (COUNT stream socketpairs, some with unread data),
churn (keeps about COUNT sockets in TIME_WAIT by opening and closing connections at COUNT/60 per second),
namespaces (COUNT sockets, a listener and its connections, in each of the comma-separated named namespaces in
the fourth argument: the process enters them one after another, and sockets stay in the namespace they were
made in).
"""

import os
import resource
import socket
import sys
import threading
import time

FD_LIMIT = 20000


def listener(family, host, port, backlog=4096):
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(backlog)
    return s


def tcp(count, port, v6, keep, spread=0):
    """count connections to one destination; with spread (IPv4), half of them over that many other destinations
    (listeners on 127.1.x.y:port), round robin: a few hot destinations and many cold ones."""
    family, host = (socket.AF_INET6, "::1") if v6 else (socket.AF_INET, "127.0.0.1")
    servers = [listener(family, host, port)]
    if spread and not v6:
        servers += [listener(family, f"127.1.{i // 250}.{1 + i % 250}", port, backlog=64) for i in range(spread)]
    keep.extend(servers)
    for i in range(count):
        server = servers[0] if i % 2 == 0 or len(servers) == 1 else servers[1 + (i // 2) % (len(servers) - 1)]
        client = socket.create_connection(server.getsockname()[:2])
        accepted, _ = server.accept()
        keep += [client, accepted]
        if i % 100 == 0:
            client.send(b"x" * 2048)  # some unread bytes


def close_wait(count, port, keep):
    server = listener(socket.AF_INET, "127.0.0.1", port)
    keep.append(server)
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        client.shutdown(socket.SHUT_WR)  # client FIN_WAIT2, server CLOSE_WAIT; both fds kept
        keep += [client, accepted]


def listeners(count, port, keep):
    for i in range(count):
        server = listener(socket.AF_INET, "127.0.0.1", port + i, backlog=64)
        keep.append(server)
        for _ in range(i % 8):
            keep.append(socket.create_connection(("127.0.0.1", port + i)))  # never accepted


def udp(count, port, keep):
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    keep.append(sender)
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.0.{1 + i % 200}", 0))  # one address has too few ephemeral ports for 50k sockets
        keep.append(s)
        if i % 20 == 0:
            sender.sendto(b"d" * 512, s.getsockname())


def unix(count, keep):
    for i in range(count):
        a, b = socket.socketpair()
        keep += [a, b]
        if i % 20 == 0:
            a.send(b"u" * 1024)


def churn(target, port, ready):
    """Open and close connections so that about `target` client sockets sit in TIME_WAIT (TIME_WAIT lasts 60 s).

    Sources rotate over 127.0.0.2-127.0.0.250 so that the TIME_WAIT tuples never exhaust the port range.
    """
    server = listener(socket.AF_INET, "127.0.0.1", port)
    rate = target / 60.0
    started = time.monotonic()
    done = 0
    while True:
        due = int((time.monotonic() - started) * rate) - done
        for _ in range(max(due, 0)):
            client = socket.socket()
            client.bind((f"127.0.0.{2 + done % 249}", 0))
            client.connect(("127.0.0.1", port))
            accepted, _ = server.accept()
            client.close()  # the client closes first: it goes to TIME_WAIT
            accepted.close()
            done += 1
        if not ready.is_set() and time.monotonic() - started >= 60:
            ready.set()  # steady state: the first connections expire as new ones arrive
        time.sleep(0.05)


def namespaces(count, port, names, keep):
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for name in names.split(","):
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET; this process is single-threaded
            raise OSError(ctypes.get_errno(), f"setns {name}")
        os.close(fd)
        tcp((count - 1) // 2, port, False, keep)


def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
    kind, count, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    keep = []
    if kind == "churn":
        ready = threading.Event()
        threading.Thread(target=churn, args=(count, port, ready), daemon=True).start()
        ready.wait()
    elif kind == "tcp":
        tcp(count, port, sys.argv[4] == "6", keep, int(sys.argv[5]) if len(sys.argv) > 5 else 0)
    elif kind == "close_wait":
        close_wait(count, port, keep)
    elif kind == "listeners":
        listeners(count, port, keep)
    elif kind == "udp":
        udp(count, port, keep)
    elif kind == "unix":
        unix(count, keep)
    elif kind == "namespaces":
        namespaces(count, port, sys.argv[4], keep)
    else:
        raise SystemExit(f"unknown kind {kind}")
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
