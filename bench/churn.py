"""Connection churn through a namespace, and what the flows collector makes of it.

    sudo .venv/bin/python -m bench --churn 5000,10000,20000 [--seconds 10] [--unprivileged]

For each rate: a fresh namespace with the exporter (default configuration, flows on, plus a port group of the
churn's port so that the exporter's own HTTP connections are told apart) and a server, then client
processes that open, exchange 4 bytes each way and close that many connections per second in all for --seconds.
Measured from outside the exporter: its CPU time (/proc/<pid>/stat) during the run, the events it decoded and the
overruns it counted (its /metrics before and after), and whether every connection was counted at both ends
(sockdiag_tcp_connections_closed_total against the connections the clients and the server made).

The workers, in the namespace:
    python -m bench.churn serve PORT              accept, read 4 bytes, answer 4, close (the server closes first)
    python -m bench.churn connect PORT RATE SECS  paced clients: connect, send 4 bytes, read the answer, close
each printing one JSON line with its counts at the end.
"""

import json
import os
import socket
import subprocess
import sys
import time

from .population import ROOT

PORT = 18000
EXPORTER_PORT = 19965
CLIENTS = 2  # client processes; the server is one process (the kernel does most of its work)
SYSCTLS = {"net.ipv4.ip_local_port_range": "20000 65535", "net.core.somaxconn": "65535"}


def serve(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(65535)
    print("ready", flush=True)
    accepted = 0
    listener.settimeout(2.0)
    started = None
    while True:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            if started is not None:  # the clients are done
                break
            continue
        started = started or time.monotonic()
        conn.settimeout(None)
        conn.recv(16)
        conn.send(b"pong")
        conn.close()
        accepted += 1
    print(json.dumps({"accepted": accepted}), flush=True)


def connect(port: int, rate: float, seconds: float) -> None:
    done = failed = 0
    started = time.monotonic()
    end = started + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - started) * rate) - done - failed
        if due <= 0:
            time.sleep(0.0005)
            continue
        for _ in range(min(due, 200)):
            client = socket.socket()
            try:
                client.connect(("127.0.0.1", port))
                client.send(b"ping")
                client.recv(16)
                done += 1
            except OSError:
                failed += 1
            finally:
                client.close()
    print(json.dumps({"connections": done, "failed": failed, "seconds": time.monotonic() - started}), flush=True)


# --- the driver, outside the namespace ---

def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def metrics(ns: str) -> dict:
    """The flows series of the exporter's /metrics, fetched from inside the namespace: name{labels} -> value."""
    text = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                           f"import urllib.request; print(urllib.request.urlopen("
                           f"'http://127.0.0.1:{EXPORTER_PORT}/metrics', timeout=30).read().decode())"],
                          capture_output=True, text=True, check=True).stdout
    found = {}
    for line in text.splitlines():
        if line.startswith(("sockdiag_flow", "sockdiag_port_group_tcp_connections_closed")):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def closed(values: dict, direction: str) -> float:
    """Connections of the churn port counted (the exporter's own HTTP connections are not in the port group)."""
    return sum(v for k, v in values.items() if k.startswith("sockdiag_port_group_tcp_connections_closed_total")
               and f'direction="{direction}"' in k)


def measure(rate: int, seconds: float, unprivileged: bool = False, receive_buffer: int = 0) -> dict:
    ns = f"sdchurn-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs = []
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for key, value in SYSCTLS.items():
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"], check=True)
        user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if unprivileged else []
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "exporter"))
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "bench.churn", "serve", str(PORT)],
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True)
        procs.append(server)
        assert server.stdout.readline().strip() == "ready"
        config = os.path.join("/tmp", f"{ns}.yml")
        with open(config, "w") as f:
            f.write(f"port_groups: {{churn: {{local: [{PORT}], remote: [{PORT}]}}}}\n")
            if receive_buffer:
                f.write(f"flows: {{receive_buffer_bytes: {receive_buffer}}}\n")
        os.chmod(config, 0o644)
        daemon = subprocess.Popen(["ip", "netns", "exec", ns, *user, sys.executable, "-m", "sockdiag_exporter",
                                   f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}", "--log.level=warn",
                                   f"--config.file={config}"],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(daemon)
        for _ in range(300):
            try:
                before = metrics(ns)
                break
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the exporter never answered")
        cpu_before, wall_before = cpu_seconds(daemon.pid), time.monotonic()
        clients = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "bench.churn", "connect",
                                     str(PORT), str(rate / CLIENTS), str(seconds)], cwd=ROOT, stdout=subprocess.PIPE,
                                    text=True) for _ in range(CLIENTS)]
        procs += clients
        made = [json.loads(c.stdout.readline()) for c in clients]
        time.sleep(0.5)  # the last events: decoded within milliseconds
        cpu, wall = cpu_seconds(daemon.pid) - cpu_before, time.monotonic() - wall_before  # before any more scrape
        accepted = json.loads(server.stdout.readline())["accepted"]
        connections = sum(m["connections"] + m["failed"] for m in made)
        # the last events arrive within milliseconds; wait until both ends are counted (or stop changing)
        deadline, after = time.monotonic() + 30, metrics(ns)
        while time.monotonic() < deadline and (closed(after, "outbound") - closed(before, "outbound") < connections
                                               or closed(after, "inbound") - closed(before, "inbound") < accepted):
            time.sleep(0.2)
            previous, after = after, metrics(ns)
            if previous == after and time.monotonic() > deadline - 25:
                break
        events = after["sockdiag_flow_events_total"] - before["sockdiag_flow_events_total"]
        return {
            "rate": rate, "seconds": seconds, "unprivileged": unprivileged, "receive_buffer": receive_buffer,
            "rmem_max": int(open("/proc/sys/net/core/rmem_max").read()),
            "connections": connections, "failed": sum(m["failed"] for m in made), "accepted": accepted,
            "achieved_per_second": connections / max(m["seconds"] for m in made),
            "events": events, "events_per_second": events / max(m["seconds"] for m in made),
            "cpu_seconds": cpu, "wall_seconds": wall, "cpu_ms_per_1000_events": 1e6 * cpu / events if events else 0,
            "cpu_share_of_one_core": cpu / wall,
            "overruns": after["sockdiag_flow_event_overruns_total"] - before["sockdiag_flow_event_overruns_total"],
            "outbound_counted": closed(after, "outbound") - closed(before, "outbound"),
            "inbound_counted": closed(after, "inbound") - closed(before, "inbound"),
        }
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        subprocess.run(["ip", "netns", "del", ns], check=False)
        if os.path.exists(f"/tmp/{ns}.yml"):
            os.remove(f"/tmp/{ns}.yml")


def report(results: list) -> str:
    lines = ["",
             "| connections/s asked | achieved | events/s decoded | exporter CPU per 1,000 events | exporter CPU "
             "(share of one core) | overruns | every connection counted |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        every = r["outbound_counted"] == r["connections"] and r["inbound_counted"] == r["accepted"]
        notes = ([f"nobody, rmem_max {r['rmem_max']:,}"] if r["unprivileged"] else []) + (
            [f"buffer {r['receive_buffer']:,}"] if r["receive_buffer"] else [])
        asked = f"{r['rate']:,}" + (f" ({', '.join(notes)})" if notes else "")
        lines.append(f"| {asked} | {r['achieved_per_second']:,.0f} | "
                     f"{r['events_per_second']:,.0f} | {r['cpu_ms_per_1000_events']:.2f} ms | "
                     f"{100 * r['cpu_share_of_one_core']:.1f}% | {r['overruns']:.0f} | "
                     f"{'yes' if every else 'no'} ({r['outbound_counted']:.0f}/{r['connections']} out, "
                     f"{r['inbound_counted']:.0f}/{r['accepted']} in) |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "connect":
        connect(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    else:
        raise SystemExit(f"unknown worker {sys.argv[1]}")
