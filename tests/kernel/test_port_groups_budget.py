"""Port groups against ss port filters on the real kernel; the series budget trims detail, never the scrape."""

import logging
import socket
import subprocess

from helpers import nonzero, scrape, settle, ss_by_state

from sockdiag_exporter import metrics


def build(ns):
    """Listeners on three ports with clients, data in some queues; returns the three ports."""

    def work():
        ports = []
        for accepted, pending, data in ((3, 1, 700), (2, 0, 0), (1, 0, 40)):
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(8)
            ns.keep.append(server)
            for i in range(accepted + pending):
                c = socket.create_connection(server.getsockname())
                ns.keep.append(c)
                if i < accepted:
                    s, _ = server.accept()
                    ns.keep.append(s)
                    if data:
                        c.send(b"g" * data)
            ports.append(server.getsockname()[1])
        return ports

    ports = ns.run(work)
    settle(ns)
    return ports


def group_by_state(exposition, group):
    result = {}
    for i, metric in enumerate(("sockdiag_port_group_sockets", "sockdiag_port_group_receive_queue_bytes",
                                "sockdiag_port_group_send_queue_bytes")):
        for key, v in exposition.select(metric, port_group=group, family="inet", protocol="tcp").items():
            result.setdefault(dict(key)["state"], [0, 0, 0])[i] += int(v)
    return result


def test_port_groups_match_ss_filters(netns):
    web, db, other = build(netns)
    low, high = sorted((db, other))
    config = {"port_groups": {"web": {"local": [web]}, "db": {"remote": [db]},
                              "span": {"local": [f"{low}-{high}"], "remote": [f"{low}-{high}"]}}}
    exposition = scrape(netns, "tcp", config=config)
    for group, expression in (("web", f"sport = :{web}"), ("db", f"dport = :{db}"),
                              ("span", f"( sport >= :{low} and sport <= :{high} ) or "
                                       f"( dport >= :{low} and dport <= :{high} )")):
        theirs = ss_by_state(netns.ss("-t", "-a", "-4", expression), "close")
        if "listen" in theirs:  # listeners' queues are accept queues, kept out of group queue sums
            theirs["listen"][1:] = [0, 0]
        assert nonzero(group_by_state(exposition, group)) == nonzero(theirs), group
    assert group_by_state(exposition, "web")["established"][:2] == [4, 3 * 700]
    assert group_by_state(exposition, "db")["established"][0] == 2
    assert set(group_by_state(exposition, "web")) >= {"listen", "established", "time_wait", "syn_sent"}  # zeros too


def series_count(text):
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def test_series_budget_drops_the_most_detailed_breakdowns_first(netns, caplog):
    build(netns)
    full = scrape(netns)
    needed = series_count(full.text)
    base = needed - sum(series_count_of(full, m) for _, group in metrics.BREAKDOWNS for m in group)
    memory = sum(series_count_of(full, m) for m in metrics.MEMORY)
    budget = base + memory + 5  # room for memory, the least detailed breakdown, and nothing else
    with caplog.at_level(logging.WARNING):
        trimmed = scrape(netns, config={"series_budget": budget})
        scrape(netns, config={"series_budget": budget})
    check = subprocess.run(["promtool", "check", "metrics"], input=trimmed.text.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    dropped = {dict(k)["breakdown"]: v for k, v in trimmed.select("sockdiag_series_budget_dropped_series").items()}
    assert dropped["listeners"] > 0 and dropped["histograms"] > 0 and dropped["memory"] == 0
    assert not trimmed.select("sockdiag_listener_accept_queue_length")
    # (the exporter's own sock_diag sockets left out: dumps run at once, on as many sockets as ran at once, and
    # one's memory holds another's replies)
    assert without_own(trimmed.select("sockdiag_receive_memory_bytes")) == without_own(
        full.select("sockdiag_receive_memory_bytes"))
    assert series_count(trimmed.text) - 4 <= budget  # the four *_dropped_series are not budgeted
    assert without_own(trimmed.select("sockdiag_sockets")) == without_own(full.select("sockdiag_sockets"))
    warnings = [r.getMessage() for r in caplog.records if "series budget" in r.getMessage()]
    assert len(warnings) == 2  # one per scraper: each logs once, not every scrape
    tiny = scrape(netns, config={"series_budget": 10})
    assert without_own(tiny.select("sockdiag_sockets")) == without_own(full.select("sockdiag_sockets"))


def without_own(samples: dict) -> dict:
    return {k: v for k, v in samples.items() if ("protocol", "sock_diag") not in k}


def series_count_of(exposition, metric):
    suffixes = {"gaugehistogram": ("_bucket", "_gcount", "_gsum"), "histogram": ("_bucket", "_count", "_sum"),
                "counter": ("_total",)}.get(metric.kind, ("",))
    return sum(1 for (name, _) in exposition.samples if name in {metric.name + s for s in suffixes})
