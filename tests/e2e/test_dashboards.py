"""Grafana dashboards: generated (SDK, then the mixin), well-formed, every panel on the datasource variable with a
unit and a description, laid out without overlaps, and every metric they query served by a real exporter or
recorded by rules.yml."""

import glob
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import yaml

from helpers import Exposition, Peer, make_scraper, render, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRAFANA = os.path.join(ROOT, "grafana")
DASHBOARD_FILES = sorted(glob.glob(os.path.join(GRAFANA, "dashboards", "*.json")))
MIXIN_DASHBOARDS = os.path.join(ROOT, "deploy", "mixin", "dashboards")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


DASHBOARDS = {os.path.basename(p): load(p) for p in DASHBOARD_FILES}


def all_panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def queries(dashboard):
    """Every PromQL expression of a dashboard: panel targets and query variables."""
    for panel in all_panels(dashboard):
        for t in panel.get("targets", []):
            yield t["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            yield var["query"]["query"]


def recorded_names():
    with open(os.path.join(ROOT, "deploy", "prometheus", "rules.yml"), encoding="utf-8") as f:
        return {r["record"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]}


def referenced_names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b(sockdiag_[a-z0-9_]+|[a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b", expr))


def test_dashboards_exist_with_unique_uids():
    assert set(DASHBOARDS) == {"sockdiag-overview.json", "sockdiag-listeners.json"}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    assert {d["title"] for d in DASHBOARDS.values()} == {"Sockets overview", "Listeners"}


def test_regenerating_changes_nothing(tmp_path):
    """The SDK generator writes the mixin's dashboards (deploy/mixin/dashboards/); the mixin renders the shipped
    grafana/dashboards/ from them (tests/unit/test_mixin.py)."""
    result = subprocess.run([sys.executable, os.path.join(GRAFANA, "generate.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    generated = sorted(os.listdir(tmp_path))
    assert generated == sorted(os.listdir(MIXIN_DASHBOARDS)) == sorted(DASHBOARDS), \
        "the mixin's or the shipped dashboards differ from what the generator writes"
    for name in generated:
        with open(os.path.join(MIXIN_DASHBOARDS, name), encoding="utf-8") as committed:
            assert (tmp_path / name).read_text(encoding="utf-8") == committed.read(), \
                f"{name} is out of date: run python3 grafana/generate.py"
    check = subprocess.run([sys.executable, os.path.join(GRAFANA, "generate.py"), "--check"], capture_output=True)
    assert check.returncode == 0


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_schema_and_variables(name):
    d = DASHBOARDS[name]
    assert d["schemaVersion"] == 41 and d.get("id") is None and d["uid"] and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name_ in ("job", "instance"):
        assert variables[name_]["type"] == "query" and variables[name_]["datasource"] == DATASOURCE
    used = set()
    for expr in queries(d):
        used |= set(re.findall(r"\$(\w+)", expr))
    for panel in all_panels(d):
        used |= set(re.findall(r"\$(\w+)", panel["title"]))
        if panel.get("repeat"):
            used.add(panel["repeat"])
            assert variables[panel["repeat"]]["multi"], "a repeat variable must be multi-value"
    used = {u for u in used if not u.startswith("__")}
    assert used <= set(variables), f"undefined variables: {used - set(variables)}"
    assert set(variables) - {"datasource"} <= used, f"unused variables: {set(variables) - used - {'datasource'}}"
    if "port_group" in used:
        assert variables["port_group"]["type"] == "query"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_have_ids_datasource_unit_description_and_fit_the_grid(name):
    d = DASHBOARDS[name]
    panels = list(all_panels(d))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    cells = {}
    for p in panels:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0
        assert g["x"] + g["w"] <= 24, f"{p['title']} is wider than the grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), f"{p['title']} has no unit"
        assert "Bad" in p.get("description", ""), f"{p['title']}: the description must say what bad looks like"
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), "duplicate panel titles"


def test_overview_rows_and_listeners_repeat():
    overview = DASHBOARDS["sockdiag-overview.json"]
    rows = [p["title"] for p in overview["panels"] if p["type"] == "row"]
    assert rows == ["Summary", "Sockets by family, protocol and state", "Queues", "Memory and drops", "Connections",
                    "TCP health", "Listeners", "UDP receivers", "Port groups", "Network namespaces, units and containers",
                    "Exporter health"]
    types = {p["type"] for p in overview["panels"]}
    assert {"heatmap", "timeseries", "stat", "bargauge", "table", "state-timeline"} <= types
    for p in overview["panels"]:
        if p["type"] == "heatmap":
            expr = p["targets"][0]["expr"]
            assert p["targets"][0]["format"] == "heatmap" and "_bucket" in expr and "sum by (le)" in expr
            # queue depths (gauge histograms) in bytes; RTT at close (a histogram's counters: rated) and live RTT
            # (tcp_health, a gauge histogram) in seconds
            assert p["options"]["yAxis"]["unit"] == ("s" if "rtt_seconds" in expr else "bytes")
            assert ("rate(" in expr) == ("closed_rtt_seconds" in expr)  # counters are rated, gauge histograms not
    listeners = DASHBOARDS["sockdiag-listeners.json"]
    repeated = [p for p in listeners["panels"] if p.get("repeat")]
    assert [p["repeat"] for p in repeated] == ["address"] and repeated[0]["type"] == "row"
    after = listeners["panels"][listeners["panels"].index(repeated[0]) + 1:]
    exprs = " ".join(t["expr"] for p in after for t in p["targets"])
    for metric in ("sockdiag_listener_accept_queue_length", "sockdiag_listener_accept_queue_limit",
                   "sockdiag_tcp_listen_overflows_total", "sockdiag_tcp_listen_drops_total",
                   "sockdiag_listener_drops_total", "sockdiag_listener_half_open_connections",
                   "instance_address:sockdiag_listener_accept_queue:fill_ratio"):
        assert metric in exprs


def test_every_metric_queried_is_served_or_recorded(netns):
    """Names in the dashboards against what a real exporter serves (with a listener, half-open connections from a
    peer, a client and a TIME_WAIT minisocket, a UDP receiver and an autobound UDP client, a port group, namespaces
    and cgroup attribution, so the optional breakdowns are present; the full profile, so that series the default one
    leaves out while zero are there) and what rules.yml records."""
    listener = netns.run(socket.create_server, ("0.0.0.0", 8080))
    udp = netns.run(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    netns.run(udp.bind, ("127.0.0.1", 5353))
    netns.keep += [listener, udp]
    scraper = netns.run(make_scraper, {"port_groups": {"web": {"local": [8080]}}, "series_budget": 100000,
                                       "namespaces": {"named": True, "include": [netns.name]},
                                       "cgroups": {"enabled": True}, "profile": "full",
                                       "ephemeral_ports": {"destinations": 5, "interval_seconds": 0},
                                       "tcp_health": {"enabled": True}})
    netns.keep.append(scraper)
    render_in_ns = lambda: Exposition(netns.run(render, scraper))  # noqa: E731
    render_in_ns()  # the subscriber of the test's namespace starts at its first collection
    client = netns.run(socket.create_connection, ("127.0.0.1", 8080))  # flows: a connection and a UDP socket close
    listener.accept()[0].close()
    client.close()
    netns.run(socket.socket, socket.AF_INET, socket.SOCK_DGRAM).close()

    def work():  # a client kept open, one closed first (a minisocket), an autobound UDP client
        kept = socket.create_connection(("127.0.0.1", 8080))
        closed = socket.create_connection(("127.0.0.1", 8080))
        closed.close()
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"x", ("127.0.0.1", 5353))
        netns.keep.extend([kept, sender])

    netns.run(work)
    peer = Peer(netns)
    try:
        peer.connect(socket.AF_INET, ("10.9.0.1", 8080), 2)
        assert wait_until(lambda: any(state == "SYN-RECV" for _, state, _, _, _ in netns.ss("-t", "-a")))
        exposition = render_in_ns()
        for _ in range(100):  # the events arrive within milliseconds
            if exposition.select("sockdiag_udp_sockets_closed_total") and exposition.select(
                    "sockdiag_listener_tcp_connections_closed_total"):
                break
            time.sleep(0.05)
            exposition = render_in_ns()
    finally:
        peer.delete()
    served = {name for name, _ in exposition.samples}
    recorded = recorded_names()
    for name, d in DASHBOARDS.items():
        for expr in queries(d):
            for metric in referenced_names(expr):
                assert metric in served or metric in recorded, f"{name}: {metric} is neither served nor recorded"
    # The only other series the dashboards use: Prometheus's own and the exporter's process metrics.
    others = set()
    for d in DASHBOARDS.values():
        for expr in queries(d):
            stripped = re.sub(r'"(?:[^"\\]|\\.)*"|\$\w+|\[[^\]]*\]', "", expr)
            others |= {m for m in re.findall(r"(?<![\w:])([a-z_][a-z0-9_]*)\s*\{", stripped)
                       if not m.startswith("sockdiag_") and ":" not in m}
    assert others <= {"up", "scrape_duration_seconds", "process_resident_memory_bytes"}, others


def test_provisioning_files():
    with open(os.path.join(GRAFANA, "provisioning", "dashboards", "sockdiag.yml"), encoding="utf-8") as f:
        text = f.read()
    provider = yaml.safe_load(text)["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/usr/share/sockdiag-exporter/grafana/dashboards"
    assert "packages" in text  # the comment says where the packages install them
    with open(os.path.join(GRAFANA, "provisioning", "datasources", "prometheus.yml"), encoding="utf-8") as f:
        source = yaml.safe_load(f)["datasources"][0]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
