"""End to end against a real Prometheus: the exporter daemon and `prometheus` run in one fresh network namespace
(127.0.0.1 only, a temporary data directory, 1 s scrapes), loading the shipped rules with `for:` shortened and a
few thresholds lowered. Real trouble is built in the namespace — a listener whose full accept queue overflows,
CLOSE_WAIT sockets, TIME_WAIT sockets, orphans in FIN_WAIT1, a socket with megabytes unread, a UDP receiver that
drops datagrams, a dead scrape target — and the matching alerts must reach "firing" through /api/v1/alerts. Then
every query of every dashboard, its variables substituted as Grafana would, must parse and return data."""

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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROM_DIR = os.path.join(ROOT, "deploy", "prometheus")
DASHBOARD_DIR = os.path.join(ROOT, "grafana", "dashboards")

EXPORTER_PORT = 19965
PROMETHEUS_PORT = 19090
DEAD_PORT = 9  # nothing listens there: a target that is down
FULL_PORT, CLOSE_WAIT_PORT, TIME_WAIT_PORT, ORPHAN_PORT, BACKLOG_PORT, UDP_PORT = 8080, 8081, 8082, 8083, 8084, 5353
SO_RCVBUFFORCE = 33  # Linux; not exported by the socket module

# Thresholds lowered so a handful of sockets cross them (the shipped values are for production hosts); the other
# thresholds (fill ratio 0.8, any overflow, any UDP drop, any socket over 1 MiB) are used as shipped.
THRESHOLDS = {
    "sockdiag:threshold:close_wait_sockets": 3,           # 4 CLOSE_WAIT sockets are made
    "sockdiag:threshold:ephemeral_port_range_size": 4,    # x 0.8 = 3.2; 5 TIME_WAIT sockets are made
    "sockdiag:threshold:tcp_max_orphans": 2,              # x 0.8 = 1.6; 3 orphans are made
}
EXPECTED_FIRING = {
    "SockdiagListenerAcceptQueueNearLimit": {"address": f"127.0.0.1:{FULL_PORT}", "protocol": "tcp"},
    "SockdiagTCPListenOverflows": {"instance": f"127.0.0.1:{EXPORTER_PORT}"},
    "SockdiagCloseWaitAccumulating": {"protocol": "tcp", "state": "close_wait"},
    "SockdiagTimeWaitNearPortRange": {"protocol": "tcp", "state": "time_wait"},
    "SockdiagTCPOrphansNearLimit": {"instance": f"127.0.0.1:{EXPORTER_PORT}"},
    "SockdiagReceiveQueueBacklog": {"family": "inet", "protocol": "tcp"},
    "SockdiagUDPReceiveBufferErrors": {"family": "inet", "protocol": "udp"},
    "SockdiagExporterDown": {"instance": f"127.0.0.1:{DEAD_PORT}"},
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
    """Copies of rules.yml and alerts.yml for the test: thresholds lowered, every `for:` 1 s."""
    with open(os.path.join(PROM_DIR, "rules.yml"), encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    found = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("record") in THRESHOLDS:
                rule["expr"] = f"vector({THRESHOLDS[rule['record']]})"
                found.add(rule["record"])
    assert found == set(THRESHOLDS)
    with open(os.path.join(PROM_DIR, "alerts.yml"), encoding="utf-8") as f:
        alerts = yaml.safe_load(f)
    for group in alerts["groups"]:
        for rule in group["rules"]:
            rule["for"] = "1s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(alerts, sort_keys=False))


class Trouble:
    """Sockets in the namespace in the states the alerts are about; a thread keeps the counters growing."""

    def __init__(self, ns):
        self.ns = ns
        self.sockets = []
        self.stop_event = threading.Event()

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
        server = self.listener(CLOSE_WAIT_PORT)
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
        # A UDP receiver with the smallest buffer, never reading.
        self.udp_receiver = self.sock(kind=socket.SOCK_DGRAM)
        self.udp_receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        self.udp_receiver.bind(("127.0.0.1", UDP_PORT))
        self.udp_sender = self.sock(kind=socket.SOCK_DGRAM)
        self.thread = threading.Thread(target=self.keep_dropping, daemon=True)
        self.thread.start()

    def keep_dropping(self):
        """New SYNs to the full listener (each one a ListenOverflow) and UDP datagrams into the full buffer."""
        while not self.stop_event.wait(0.5):
            self.start_connect(FULL_PORT)
            for _ in range(20):
                self.udp_sender.sendto(b"u" * 512, ("127.0.0.1", UDP_PORT))

    def close(self):
        self.stop_event.set()
        if hasattr(self, "thread"):
            self.thread.join(5)
        for s in self.sockets:
            s.close()


def fill(sock):
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"o" * 65536)
    except BlockingIOError:
        pass


@pytest.fixture
def stack(netns, tmp_path):
    """Exporter and Prometheus in the namespace, with the trouble built; yields a query function."""
    write_rule_files(tmp_path)
    (tmp_path / "exporter.yml").write_text(yaml.safe_dump({
        "port_groups": {"web": {"local": [FULL_PORT, CLOSE_WAIT_PORT]}, "bulk": {"local": [BACKLOG_PORT]}},
        "series_budget": 100000,
    }))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml"), str(tmp_path / "alerts.yml")],
        "scrape_configs": [{"job_name": "sockdiag", "static_configs": [{"targets": [
            f"127.0.0.1:{EXPORTER_PORT}", f"127.0.0.1:{DEAD_PORT}"]}]}],
    }))
    check = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    trouble = Trouble(netns)
    processes = []
    try:
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

        yield api
    finally:
        for p in reversed(processes):
            p.stop()
        trouble.close()
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
        if var.get("multi") or var.get("includeAll"):
            texts[var["name"]] = "(" + "|".join(grafana_regex_escape(v) for v in found) + ")"
        else:
            texts[var["name"]] = found[0]
    return values, texts


def firing(api):
    return [a for a in api("alerts")["alerts"] if a["state"] == "firing"]


def test_alerts_fire_and_every_dashboard_query_returns_data(stack):
    api = stack

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
    time.sleep(3)
    checked = 0
    for name in sorted(os.listdir(DASHBOARD_DIR)):
        with open(os.path.join(DASHBOARD_DIR, name), encoding="utf-8") as f:
            dashboard = json.load(f)
        values, texts = resolve_variables(api, dashboard)
        assert values["job"] == ["sockdiag"] and values["instance"] == [f"127.0.0.1:{EXPORTER_PORT}"]
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
                    expr = substitute(t["expr"], panel_texts)
                    data = api("query", query=expr)
                    assert data["result"], f"{name} / {panel['title']} ({value}): no data for {expr}"
                    checked += 1
    print(f"firing: {sorted(active)}; {checked} dashboard queries returned data")
    assert checked > 60
