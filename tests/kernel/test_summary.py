"""`sockdiag-exporter summary` in a quiescent namespace: its numbers equal /metrics' (a collection rendered as the
exporter serves it), as JSON and as text; one namespace with --netns, the namespace list with --namespaces."""

import json
import subprocess
import sys

from helpers import Exposition, make_scraper, metrics_numbers, overview_numbers, populate, render, scrape

from sockdiag_exporter import summary

NO_NETLINK = {"collectors": {"netlink": False}}  # each process's own diag sockets differ


def run_summary(netns, *args, inside=True):
    command = [sys.executable, "-m", "sockdiag_exporter", "summary", "--no-collector.netlink", *args]
    if inside:
        command = ["ip", "netns", "exec", netns.name] + command
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_summary_equals_metrics_in_a_quiescent_namespace(netns, tmp_path):
    names = populate(netns, tmp_path)
    expected = metrics_numbers(scrape(netns, config=NO_NETLINK))
    result = run_summary(netns, "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    view = json.loads(result.stdout)
    assert overview_numbers(view) == expected
    listeners = {row["address"]: row for row in view["listeners"]}
    assert view["listeners"][0]["address"] == names["full"]  # the fullest first
    assert (listeners[names["full"]]["length"], listeners[names["full"]]["limit"]) == (7, 8)
    assert names["script"] in listeners and names["path"] in listeners
    assert view["udp"] and any(row["receive_buffer_errors"] > 100 for row in view["udp"])
    receiver = view["receivers"][0]  # the most drops first
    assert receiver["address"] == names["receiver"] and receiver["drops"] > 100 and receiver["sockets"] == 1
    assert receiver["drops"] == next(row["dropped_by_live_sockets"] for row in view["udp"] if row["family"] == "inet"
                                     and row["protocol"] == "udp")
    ports, = view["ports"]
    assert ports["usage"]["inet"] > 0 and ports["usage"]["inet6"] > 0  # the connections to the listeners
    assert ports["range_size"] > 0 and ports["timewait_limit"] > 0

    text = run_summary(netns)
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    assert max(map(len, lines)) <= summary.WIDTH
    assert f"SOCKETS: {expected['total']}" in lines
    assert any("7/8" in line and line.endswith(names["full"]) for line in lines)
    assert any(line.endswith(names["script"]) for line in lines)
    assert any(line.split()[:1] == [str(receiver["drops"])] and line.endswith(names["receiver"]) for line in lines)
    assert any(line.startswith("EPHEMERAL PORTS") for line in lines)
    assert "\x1b" not in text.stdout and "@\\x1b[31mred\\x1b[0m" in text.stdout  # escaped, not obeyed
    for kind, states in expected["sockets"].items():
        row = next(line for line in lines if line.startswith(summary.overview.kind(*kind) + " "))
        assert row.split()[len(summary.overview.kind(*kind).split())] == str(sum(states.values()))


def test_one_namespace_and_the_namespace_list(netns, tmp_path):
    """From the host: namespaces.named collects the test's namespace beside the host's own; --netns shows its
    tables only, --namespaces its line."""
    populate(netns, tmp_path)
    config = tmp_path / "config.yml"
    config.write_text(f"namespaces: {{named: true, include: [{netns.name}]}}\n")
    scraper = make_scraper({"namespaces": {"named": True, "include": [netns.name]}, **NO_NETLINK})
    try:
        exposition = Exposition(render(scraper))
    finally:
        scraper.close()
    expected = metrics_numbers(exposition, netns=netns.name)
    result = run_summary(netns, "--json", "--namespaces", "--netns", netns.name, f"--config.file={config}",
                         inside=False)
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    numbers, expected_missing = overview_numbers(view), metrics_numbers(exposition)["missing"]
    assert numbers.pop("missing") == expected_missing  # a kernel-wide fact, whichever namespace is shown
    expected.pop("missing")
    assert numbers == expected and view["netns"] == netns.name
    lines = {row["netns"]: row for row in view["namespaces"]}
    assert lines[netns.name]["sockets"] == expected["total"] and lines[netns.name]["failures"] == []
    assert len(lines) == 2  # the host's own and the test's

    text = run_summary(netns, "--namespaces", f"--config.file={config}", inside=False)
    assert text.returncode == 0
    assert any(line.startswith(netns.name) and f" {expected['total']}  none" in line
               for line in text.stdout.splitlines())

    missing = run_summary(netns, "--netns", "no-such-namespace", f"--config.file={config}", inside=False)
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1
    assert "no network namespace 'no-such-namespace' was collected" in missing.stderr
