"""End to end against a real Prometheus: the exporter daemon and `prometheus` run in one fresh network namespace
(127.0.0.1 only, a temporary data directory, 1 s scrapes), scraping with the shipped example's job and loading
the rules the mixin renders with a few thresholds lowered through its _config (and `for:` shortened). Real trouble
is built in the namespace — a listener whose full accept queue overflows and drops, CLOSE_WAIT sockets, TIME_WAIT
sockets filling a small tcp_max_tw_buckets, orphans in FIN_WAIT1, a socket with megabytes unread, a UDP receiver
that drops datagrams, a destination using most of a narrowed ephemeral port range, half-open connections from a
peer whose handshakes never complete, a dead scrape target, refused connects, transfers over a lossy TUN link to a
second namespace — and the matching alerts must reach "firing" through /api/v1/alerts. Then every query of the
mixin's dashboards, its variables substituted as Grafana would, must parse and return data, and filter on every
variable whose label its series carry. Last, every shipped scrape configuration must yield the job the rules select."""

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
import yaml

from helpers import NetNS, Peer
from tunlink import TunLink

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROM_DIR = os.path.join(ROOT, "deploy", "prometheus")
K8S_DIR = os.path.join(ROOT, "deploy", "kubernetes")
sys.path.insert(0, os.path.join(ROOT, "deploy", "mixin"))
import render as mixin  # deploy/mixin/render.py, imported after the path is set

EXPORTER_PORT = 19965
PROMETHEUS_PORT = 19090
DEAD_PORT = 9  # nothing listens there: a target that is down
FULL_PORT, CLOSE_WAIT_PORT, TIME_WAIT_PORT, ORPHAN_PORT, BACKLOG_PORT, UDP_PORT = 8080, 8081, 8082, 8083, 8084, 5353
BUSY_PORT, HALF_OPEN_PORT = 8085, 8086
LOSSY_PORT = 8090  # in the second namespace, behind a TUN link that loses a third of the packets
SO_RCVBUFFORCE = 33  # Linux; not exported by the socket module
# The namespace's kernel settings: a port range of 200 ports (170 connections to one destination use 85% of it), a
# TIME_WAIT table of 6 (5 TIME_WAIT sockets are made), SYN-ACKs retried for minutes (half-open connections last).
SYSCTLS = {"net.ipv4.ip_local_port_range": "40000 40199", "net.ipv4.tcp_max_tw_buckets": "6",
           "net.ipv4.tcp_synack_retries": "10"}
BUSY_CONNECTIONS = 170

# Thresholds lowered through the mixin's _config so a handful of sockets cross them (the shipped values are for
# production hosts); the other thresholds (fill ratio 0.8, any overflow, any UDP drop, any socket over 1 MiB) are
# used as shipped.
THRESHOLDS = {
    "close_wait_sockets": 3,           # 4 CLOSE_WAIT sockets are made
    "tcp_max_orphans": 2,              # x 0.8 = 1.6; 3 orphans are made
}
EXPECTED_FIRING = {
    "SockdiagListenerAcceptQueueNearLimit": {"address": f"127.0.0.1:{FULL_PORT}", "protocol": "tcp"},
    "SockdiagListenerDropping": {"address": f"127.0.0.1:{FULL_PORT}", "protocol": "tcp"},
    "SockdiagTCPListenOverflows": {"instance": f"127.0.0.1:{EXPORTER_PORT}"},
    "SockdiagCloseWaitAccumulating": {"protocol": "tcp", "state": "close_wait"},
    "SockdiagEphemeralPortsNearExhaustion": {"family": "inet", "instance": f"127.0.0.1:{EXPORTER_PORT}"},
    "SockdiagTimeWaitBucketsNearLimit": {"instance": f"127.0.0.1:{EXPORTER_PORT}"},
    "SockdiagUDPReceiverDropping": {"address": f"127.0.0.1:{UDP_PORT}", "protocol": "udp"},
    "SockdiagTCPOrphansNearLimit": {"instance": f"127.0.0.1:{EXPORTER_PORT}"},
    "SockdiagReceiveQueueBacklog": {"family": "inet", "protocol": "tcp"},
    "SockdiagUDPReceiveBufferErrors": {"family": "inet", "protocol": "udp"},
    "SockdiagExporterDown": {"instance": f"127.0.0.1:{DEAD_PORT}"},
    "SockdiagTCPConnectFailures": {"instance": f"127.0.0.1:{EXPORTER_PORT}"},
    "SockdiagTCPRetransmissions": {"instance": f"127.0.0.1:{EXPORTER_PORT}"},
}
NEVER_FIRING = {"SockdiagCollectorFailed", "SockdiagExporterAbsent", "SockdiagRecordingRulesMissing"}
# What Grafana substitutes for its built-in interval variables (1 s scrapes: $__rate_interval is >= 4 s).
BUILTINS = {"__rate_interval": "20s", "__interval": "5s", "__range": "5m"}


def http_get(ns, port, path):
    def work():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    return ns.run(work)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


class Process:
    """A process started in the namespace with `ip netns exec` (which execs it: the pid is the process's own)."""

    def __init__(self, ns, argv, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns.name, *argv], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def write_rule_files(tmp_path):
    """The mixin rendered with the thresholds lowered; every `for:` 1 s. Returns its dashboards."""
    rendered = mixin.evaluate({"thresholds": THRESHOLDS})
    for group in rendered["rules"]["groups"]:
        for rule in group["rules"]:
            name = rule["record"].rpartition(":")[2]
            if name in THRESHOLDS:
                assert rule["expr"] == f"vector({THRESHOLDS[name]})"
    for group in rendered["alerts"]["groups"]:
        for rule in group["rules"]:
            rule["for"] = "1s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rendered["rules"], sort_keys=False))
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rendered["alerts"], sort_keys=False))
    return rendered["dashboards"]


def shipped_static_job():
    """The exporter's job of deploy/prometheus/prometheus.example.yml."""
    with open(os.path.join(PROM_DIR, "prometheus.example.yml"), encoding="utf-8") as f:
        (job,) = [j for j in yaml.safe_load(f)["scrape_configs"] if "static_configs" in j]
    return job


class Trouble:
    """Sockets in the namespace in the states the alerts are about; threads keep the counters growing: overflows,
    UDP drops, and connections that close — refused connects, completed ones, and transfers over a lossy link to
    the peer namespace (retransmissions)."""

    def __init__(self, ns, peer):
        self.ns, self.peer = ns, peer
        self.sockets = []
        self.stop_event = threading.Event()
        self.syn_peer = None

    def sock(self, family=socket.AF_INET, kind=socket.SOCK_STREAM):
        s = self.ns.run(socket.socket, family, kind)  # created in the namespace; usable from any thread
        self.sockets.append(s)
        return s

    def listener(self, port, backlog=16, rcvbuf_force=None):
        s = self.sock()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf_force:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf_force)
        s.bind(("127.0.0.1", port))
        s.listen(backlog)
        return s

    def connect(self, port):
        c = self.sock()
        c.connect(("127.0.0.1", port))
        return c

    def start_connect(self, port):
        c = self.sock()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))

    def build(self):
        # A listener that never accepts: backlog 4, so the queue holds 5 and later SYNs overflow.
        self.listener(FULL_PORT, backlog=4)
        for _ in range(8):
            self.start_connect(FULL_PORT)
        # CLOSE_WAIT: the clients close, the server never does.
        server = self.close_wait_server = self.listener(CLOSE_WAIT_PORT)
        for _ in range(4):
            self.connect(CLOSE_WAIT_PORT).close()
            self.sockets.append(server.accept()[0])
        # TIME_WAIT: the clients close first, then the server; the clients' ends wait 60 s.
        server = self.listener(TIME_WAIT_PORT)
        for _ in range(5):
            client = self.connect(TIME_WAIT_PORT)
            accepted, _ = server.accept()
            client.close()
            time.sleep(0.01)
            accepted.close()
        # Orphans: the clients fill the window of a server that never reads, then close; their FINs wait behind
        # the data in FIN_WAIT1, with no file descriptor.
        server = self.listener(ORPHAN_PORT)
        for _ in range(3):
            client = self.connect(ORPHAN_PORT)
            self.sockets.append(server.accept()[0])
            fill(client)
            client.close()
        # A receiver with a 16 MiB buffer that never reads, and 3 MiB sent to it.
        server = self.listener(BACKLOG_PORT, rcvbuf_force=8 << 20)
        client = self.connect(BACKLOG_PORT)
        receiver, _ = server.accept()
        self.sockets.append(receiver)
        client.setblocking(False)
        sent, deadline = 0, time.monotonic() + 10
        while sent < 3 << 20 and time.monotonic() < deadline:
            try:
                sent += client.send(b"b" * 65536)
            except BlockingIOError:
                time.sleep(0.01)
        assert sent >= 3 << 20
        # Most of the (narrowed) ephemeral port range used towards one destination.
        server = self.listener(BUSY_PORT, backlog=BUSY_CONNECTIONS)
        for _ in range(BUSY_CONNECTIONS):
            self.connect(BUSY_PORT)
            self.sockets.append(server.accept()[0])
        # Half-open connections: a peer whose SYN-ACKs vanish (helpers.Peer) connects to a listener.
        self.syn_peer = Peer(self.ns)
        half_open = self.sock()
        half_open.bind(("10.9.0.1", HALF_OPEN_PORT))
        half_open.listen(64)
        self.syn_peer.connect(socket.AF_INET, ("10.9.0.1", HALF_OPEN_PORT), 3)
        # A UDP receiver with the smallest buffer, never reading.
        self.udp_receiver = self.sock(kind=socket.SOCK_DGRAM)
        self.udp_receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        self.udp_receiver.bind(("127.0.0.1", UDP_PORT))
        self.udp_sender = self.sock(kind=socket.SOCK_DGRAM)
        # A link to the peer namespace losing a third of the packets, and a server there that reads everything.
        self.link = TunLink(self.ns, self.peer, loss=0.33, seed=3)
        self.lossy_server = self.peer.run(socket.create_server, (self.link.b, LOSSY_PORT))
        self.threads = [threading.Thread(target=work, daemon=True)
                        for work in (self.keep_dropping, self.keep_losing, self.keep_reading)]
        for thread in self.threads:
            thread.start()

    def keep_dropping(self):
        """New SYNs to the full listener (each one a ListenOverflow), UDP datagrams into the full buffer, refused
        connects, completed connections and closed UDP sockets (flows)."""
        while not self.stop_event.wait(0.5):
            self.start_connect(FULL_PORT)
            for _ in range(20):
                self.udp_sender.sendto(b"u" * 512, ("127.0.0.1", UDP_PORT))
            for _ in range(3):
                refused = self.ns.run(socket.socket)
                with contextlib.suppress(ConnectionRefusedError):
                    refused.connect(("127.0.0.1", DEAD_PORT))
                refused.close()
            client = self.ns.run(socket.create_connection, ("127.0.0.1", CLOSE_WAIT_PORT))
            self.close_wait_server.accept()[0].close()
            client.close()
            self.ns.run(socket.socket, socket.AF_INET, socket.SOCK_DGRAM).close()

    def keep_losing(self):
        """Transfers over the lossy link, one after another: their retransmissions count when they close."""
        while not self.stop_event.is_set():
            client = self.ns.run(socket.socket)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 10000)
            client.settimeout(10)
            with contextlib.suppress(OSError):
                client.connect((self.link.b, LOSSY_PORT))
                client.sendall(b"l" * 30000)
            client.close()

    def keep_reading(self):
        self.lossy_server.settimeout(1)
        while not self.stop_event.is_set():
            try:
                conn, _ = self.lossy_server.accept()
            except socket.timeout:
                continue
            conn.settimeout(15)
            with contextlib.suppress(OSError):
                while conn.recv(65536):
                    pass
            conn.close()

    def close(self):
        self.stop_event.set()
        for thread in getattr(self, "threads", ()):
            thread.join(20)
        for s in self.sockets:
            s.close()
        if hasattr(self, "link"):
            self.lossy_server.close()
            self.link.close()
        if self.syn_peer:
            self.syn_peer.delete()



def fill(sock):
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"o" * 65536)
    except BlockingIOError:
        pass


@pytest.fixture
def stack(netns, tmp_path):
    """Exporter and Prometheus in the namespace, with the trouble built; yields a query function and the mixin's
    dashboards. The exporter also collects a second namespace with a listener (netns label) and attributes
    sockets to cgroups (cgroup label), so every dashboard variable has values."""
    dashboards = write_rule_files(tmp_path)
    # A second namespace with a listener and one connection waiting in its accept queue (a namespace's zero
    # values are left out: sparse).
    peer = NetNS()
    server = peer.run(socket.create_server, ("127.0.0.1", 8443))
    client = peer.run(socket.create_connection, ("127.0.0.1", 8443))
    peer.keep += [server, client]
    # cgroup2 mounted where `ip netns exec` (which mounts a new /sys) leaves it visible to the exporter.
    cgroup2 = tmp_path / "cgroup2"
    cgroup2.mkdir()
    subprocess.run(["mount", "-t", "cgroup2", "none", str(cgroup2)], check=True)
    (tmp_path / "exporter.yml").write_text(yaml.safe_dump({
        "port_groups": {"web": {"local": [FULL_PORT, CLOSE_WAIT_PORT]}, "bulk": {"local": [BACKLOG_PORT]}},
        "series_budget": 100000,
        "namespaces": {"named": True, "include": [peer.name]},
        "cgroups": {"enabled": True, "mount": str(cgroup2)},
        "tcp_health": {"enabled": True},
    }))
    job = shipped_static_job()
    job["static_configs"] = [{"targets": [f"127.0.0.1:{EXPORTER_PORT}", f"127.0.0.1:{DEAD_PORT}"]}]
    job.pop("scrape_interval", None)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml"), str(tmp_path / "alerts.yml")],
        "scrape_configs": [job],
    }))
    check = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    trouble = Trouble(netns, peer)
    processes = []
    try:
        for key, value in SYSCTLS.items():
            netns.sh(f"sysctl -qw {key}='{value}'")
        trouble.build()
        processes.append(Process(netns, [sys.executable, "-m", "sockdiag_exporter",
                                         f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}",
                                         f"--config.file={tmp_path / 'exporter.yml'}"], tmp_path / "exporter.log"))
        wait_for(lambda: http_get(netns, EXPORTER_PORT, "/")[0] == 200, 15, "the exporter")
        processes.append(Process(netns, ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                         f"--storage.tsdb.path={tmp_path / 'data'}",
                                         f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
                                         "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                                 tmp_path / "prometheus.log"))
        wait_for(lambda: http_get(netns, PROMETHEUS_PORT, "/-/ready")[0] == 200, 30, "Prometheus")

        def api(path, **params):
            query = urllib.parse.urlencode(params, doseq=True)
            status, body = http_get(netns, PROMETHEUS_PORT, f"/api/v1/{path}" + (f"?{query}" if query else ""))
            reply = json.loads(body)
            assert status == 200 and reply["status"] == "success", f"{path} {params}: {reply}"
            return reply["data"]

        yield api, dashboards
    finally:
        for p in reversed(processes):
            p.stop()
        trouble.close()
        peer.delete()
        subprocess.run(["umount", str(cgroup2)], check=False)
        for name in ("exporter.log", "prometheus.log"):
            path = tmp_path / name
            if path.exists() and path.stat().st_size:
                print(f"--- {name}\n{path.read_text()[-3000:]}")


def grafana_regex_escape(value):
    """What Grafana's Prometheus data source does to a multi-value variable's values in a query."""
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def substitute(expr, values):
    """$var and ${var} replaced; values maps a name to its text in the query."""
    def repl(m):
        name = m.group(1) or m.group(2)
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def resolve_variables(api, dashboard):
    """Query variables evaluated in order against Prometheus, as Grafana would with "All" selected: the values
    of each (a list) and their text in a query."""
    values, texts = {}, dict(BUILTINS)
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert m, var["query"]["query"]
        selector = substitute(m.group(1), texts)
        found = api(f"label/{m.group(2)}/values", **{"match[]": selector})
        assert found, f"variable {var['name']}: label_values({selector}, {m.group(2)}) is empty"
        values[var["name"]] = found
        if var.get("allValue"):  # "All" stands for the variable's allValue, not for the values found
            texts[var["name"]] = var["allValue"]
        elif var.get("multi") or var.get("includeAll"):
            texts[var["name"]] = "(" + "|".join(grafana_regex_escape(v) for v in found) + ")"
        else:
            texts[var["name"]] = found[0]
    return values, texts


def firing(api):
    return [a for a in api("alerts")["alerts"] if a["state"] == "firing"]


def variable_labels(dashboard):
    """Variable name -> the label it filters on (label_values(..., label)), for the query variables."""
    return {v["name"]: re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"]).group(2)
            for v in dashboard["templating"]["list"] if v["type"] == "query"}


def unfiltered_labels(api, expr, variables, label_names):
    """(metric, label) pairs where expr reads a metric whose series carry a variable's label without filtering
    on that variable (label_names caches the label names of each metric's series in Prometheus)."""
    def labels_of(name):
        if name not in label_names:
            label_names[name] = {label for series in api("series", **{"match[]": name}) for label in series}
        return label_names[name]

    missing = []
    code = re.sub(r'"(?:[^"\\]|\\.)*"', lambda q: '"' + "x" * (len(q.group(0)) - 2) + '"', expr)  # same offsets
    for m in re.finditer(r"(?<![\w:])([a-zA-Z_][\w]*(?::[\w]+)*)\s*(\{[^}]*\})?(?!\s*\()", code):
        name = m.group(1)
        if name in ("by", "without", "on", "group_left", "group_right", "or", "and", "unless", "bool") \
                or name.startswith("__"):
            continue
        original = expr[m.start(2):m.end(2)]
        for var, label in variables.items():
            if label in labels_of(name) and f'{label}=~"${var}"' not in original:
                missing.append((name, label))
    return missing


def test_alerts_fire_and_every_dashboard_query_returns_data(stack):
    api, dashboards = stack
    job_name = shipped_static_job()["job_name"]

    def all_expected_firing():
        alerts = firing(api)
        return all(any(a["labels"]["alertname"] == name and labels.items() <= a["labels"].items() for a in alerts)
                   for name, labels in EXPECTED_FIRING.items())

    try:
        wait_for(all_expected_firing, 60, "the alerts to fire")
    except AssertionError:
        names = sorted({a["labels"]["alertname"] for a in firing(api)})
        raise AssertionError(f"firing: {names}; expected {sorted(EXPECTED_FIRING)}") from None
    active = {a["labels"]["alertname"] for a in api("alerts")["alerts"]}
    assert not active & NEVER_FIRING, active & NEVER_FIRING
    down = [a for a in firing(api) if a["labels"]["alertname"] == "SockdiagExporterDown"]
    assert [a["labels"]["instance"] for a in down] == [f"127.0.0.1:{DEAD_PORT}"]  # not the live exporter
    for alert in firing(api):
        assert alert["annotations"]["runbook_url"].endswith("#" + alert["labels"]["alertname"].lower())

    # rate() over $__rate_interval needs two samples of every counter in the window: wait for a few more scrapes.
    scrapes = f'count_over_time(up{{job="{job_name}", instance="127.0.0.1:{EXPORTER_PORT}"}}[1m])'
    first = float(api("query", query=scrapes)["result"][0]["value"][1])
    wait_for(lambda: float(api("query", query=scrapes)["result"][0]["value"][1]) >= first + 3, 30,
             "three more scrapes")
    checked = 0
    label_names = {}
    for name, dashboard in sorted(dashboards.items()):
        values, texts = resolve_variables(api, dashboard)
        assert values["job"] == [job_name] and values["instance"] == [f"127.0.0.1:{EXPORTER_PORT}"]
        assert len(values["netns"]) == 2, values["netns"]
        if "cgroup" in values:
            assert values["cgroup"], "no cgroup attributed"
        variables = variable_labels(dashboard)
        if "port_group" in values:
            assert values["port_group"] == ["bulk", "web"]
        if "address" in values:
            assert f"127.0.0.1:{FULL_PORT}" in values["address"]
        repeat = None
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                repeat = panel.get("repeat")
                continue
            # A repeated row's panels are drawn once per value of its variable, each with that single value.
            for value in values[repeat] if repeat else [None]:
                panel_texts = dict(texts, **({repeat: grafana_regex_escape(value)} if repeat else {}))
                for t in panel["targets"]:
                    unfiltered = unfiltered_labels(api, t["expr"], variables, label_names)
                    assert not unfiltered, f"{name} / {panel['title']}: {unfiltered} not filtered in {t['expr']}"
                    expr = substitute(t["expr"], panel_texts)
                    data = api("query", query=expr)
                    assert data["result"], f"{name} / {panel['title']} ({value}): no data for {expr}"
                    checked += 1
    print(f"firing: {sorted(active)}; {checked} dashboard queries returned data")
    assert checked > 60


# --- Every shipped scrape configuration yields the job the rules select ----------------------------------------

def kubernetes_documents(name):
    with open(os.path.join(K8S_DIR, name), encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def sanitize(label):
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def pod_meta_labels():
    """The __meta_kubernetes_* labels Kubernetes service discovery gives a pod of the shipped DaemonSet (role pod;
    endpoints role adds the Service's)."""
    daemonset = next(d for d in kubernetes_documents("daemonset.yaml") if d["kind"] == "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    labels = {"__meta_kubernetes_namespace": daemonset["metadata"]["namespace"],
              "__meta_kubernetes_pod_name": daemonset["metadata"]["name"] + "-x7k2p",
              "__meta_kubernetes_pod_node_name": "node-1",
              "__meta_kubernetes_pod_container_name": container["name"],
              "__meta_kubernetes_pod_container_port_name": port["name"],
              "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
              "__meta_kubernetes_pod_container_port_protocol": port["protocol"]}
    for key, value in daemonset["spec"]["template"]["metadata"]["labels"].items():
        labels[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
        labels[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
    return labels


def relabel_config(operator_relabeling):
    """A ServiceMonitor relabeling (camelCase) as Prometheus's relabel_config."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {names.get(key, key): value for key, value in operator_relabeling.items()}


def service_monitor_job(monitor, service, with_its_relabelings=True):
    """The scrape job the Prometheus Operator generates for the monitor's first endpoint (its
    generateServiceMonitorConfig): keep the Service's selected labels and the endpoint's port; job = the Service
    name, or the value of the Service label spec.jobLabel names; then the endpoint's own relabelings."""
    endpoint = monitor["spec"]["endpoints"][0]
    relabel = [{"action": "keep", "source_labels": [f"__meta_kubernetes_service_label_{sanitize(k)}"], "regex": v}
               for k, v in sorted(monitor["spec"]["selector"]["matchLabels"].items())]
    relabel.append({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                    "regex": endpoint["port"]})
    relabel.append({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"})
    if monitor["spec"].get("jobLabel"):
        relabel.append({"source_labels": [f"__meta_kubernetes_service_label_{sanitize(monitor['spec']['jobLabel'])}"],
                        "target_label": "job", "regex": "(.+)"})
    if with_its_relabelings:
        relabel += [relabel_config(r) for r in endpoint.get("relabelings", [])]
    meta = dict(pod_meta_labels(), __meta_kubernetes_service_name=service["metadata"]["name"],
                __meta_kubernetes_endpoint_port_name=endpoint["port"])
    for key, value in service["metadata"]["labels"].items():
        meta[f"__meta_kubernetes_service_label_{sanitize(key)}"] = value
    name = f"serviceMonitor/{monitor['metadata']['namespace']}/{monitor['metadata']['name']}/0"
    return {"job_name": name, "relabel_configs": relabel}, meta


def test_every_shipped_scrape_config_yields_the_job_the_rules_select(netns, tmp_path):
    """A real Prometheus relabels a target of each shipped scrape configuration: the static example as shipped;
    the Kubernetes SD job and the Operator's job for the ServiceMonitor with the discovered target handed over by
    file_sd, carrying the meta labels Kubernetes discovery would attach. Then `up` with the rules' selector must
    find each one's target (and the ServiceMonitor without its job relabeling must not be found: the Operator
    names that job after the Service)."""
    selector = mixin.evaluate()["config"]["sockdiagSelector"]
    alerts = [r for g in mixin.evaluate()["alerts"]["groups"] for r in g["rules"]]
    assert {r["alert"]: r["expr"] for r in alerts}["SockdiagExporterDown"] == f"up{{{selector}}} == 0"

    def file_sd(job, name, meta, port):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": meta}]))
        job = {k: v for k, v in job.items() if k not in ("kubernetes_sd_configs", "static_configs")}
        return dict(job, file_sd_configs=[{"files": [str(path)]}])

    static = shipped_static_job()
    static["static_configs"] = [{"targets": ["127.0.0.1:19101"]}]
    (kubernetes_sd,) = kubernetes_documents("prometheus-scrape.yml")[0]["scrape_configs"]
    service, monitor = kubernetes_documents("service.yaml")
    operator_job, operator_meta = service_monitor_job(monitor, service)
    bare_job, bare_meta = service_monitor_job(monitor, service, with_its_relabelings=False)
    bare_job["job_name"] += "-without-relabelings"
    cases = {  # name: (scrape config, whether its job must match the selector)
        "prometheus.example.yml": (static, True),
        "kubernetes/prometheus-scrape.yml": (file_sd(kubernetes_sd, "kubernetes_sd", pod_meta_labels(), 19102), True),
        "ServiceMonitor": (file_sd(operator_job, "service_monitor", operator_meta, 19103), True),
        "ServiceMonitor without its job relabeling": (file_sd(bare_job, "bare", bare_meta, 19104), False),
    }
    jobs = {}
    for name, (job, selected) in cases.items():  # one Prometheus each: two of them are called "sockdiag"
        up, up_selected = scrape_once(netns, tmp_path / sanitize(name), job, selector)
        ((_, jobs[name]),) = up.items()
        assert bool(up_selected) == selected, f"{name} yields job {jobs[name]!r}; the rules select {{{selector}}}"
    assert jobs["ServiceMonitor without its job relabeling"] == service["metadata"]["name"]


def scrape_once(netns, directory, job, selector):
    """Prometheus with only this job, until it has tried its target: {instance: job} of `up` and of
    `up{selector}`."""
    directory.mkdir()
    job = dict(job, scrape_interval="1s", scrape_timeout="1s")
    (directory / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": [job]}))
    check = subprocess.run(["promtool", "check", "config", str(directory / "prometheus.yml")], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    prometheus = Process(netns, ["prometheus", f"--config.file={directory / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={directory / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}", "--log.level=warn"],
                         directory / "prometheus.log")
    try:
        def query(expr):
            status, body = http_get(netns, PROMETHEUS_PORT, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
            assert status == 200, body
            return {r["metric"]["instance"]: r["metric"]["job"] for r in json.loads(body)["data"]["result"]}

        wait_for(lambda: query("up"), 30, f"a scrape of {job['job_name']}")
        return query("up"), query(f"up{{{selector}}}")
    finally:
        prometheus.stop()
