"""The daemon as users run it: a subprocess serving HTTP in a fresh namespace, checked with promtool."""

import asyncio
import gzip
import json
import signal
import socket
import subprocess
import sys
import threading
import time


from helpers import PORT, Exposition, wait_until

from sockdiag_exporter.singleflight import SingleFlight
from sockdiag_exporter.web import COLLECTION_PAUSE, Server
from sockdiag_exporter.webapp import OPENMETRICS, TEXT, App


def test_metrics_pass_promtool_and_landing_page_links_them(daemon):
    d = daemon()
    status, headers, body = d.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (check.stdout + check.stderr).strip() == b""
    exposition = Exposition(body.decode())
    assert exposition.value("sockdiag_scrape_collector_success", collector="tcp") == 1
    assert exposition.value("sockdiag_sockets", family="inet", protocol="tcp", state="listen") == 1  # itself
    assert exposition.select("process_resident_memory_bytes")
    status, headers, body = d.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<a href="/metrics">' in body


def test_openmetrics_gzip_head_and_errors(daemon):
    d = daemon("--web.telemetry-path=/sockets")
    status, headers, body = d.get("/sockets", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    status, headers, body = d.get("/sockets", {"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip" and b"sockdiag_sockets" in gzip.decompress(body)
    status, headers, body = d.request("HEAD", "/sockets")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert d.get("/metrics")[0] == 404
    assert d.get("/sockets/../etc")[0] == 404
    status, headers, _ = d.request("POST", "/sockets")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert d.request("DELETE", "/")[0] == 405


def test_concurrent_scrapes_all_succeed(daemon):
    d = daemon()
    results = []

    def scrape():
        results.append(d.get("/metrics")[0])

    threads = [threading.Thread(target=scrape) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 20


def test_single_flight_shares_one_collection_among_concurrent_scrapes():
    """Scrapes of every format that arrive during a collection share it; each (format, gzip) is encoded once; a
    scrape right after the collection landed reuses it, one after as long again as it took collects anew."""
    calls, release = [], threading.Event()

    class Slow:
        def collect(self):
            calls.append(1)
            release.wait(5)
            return iter(())

    app = App(Slow(), "/metrics")

    async def burst():
        scrapes = [asyncio.ensure_future(app.metrics(fmt, gz)) for fmt in (TEXT, OPENMETRICS) for gz in (False, True)
                   for _ in range(5)]
        for _ in range(500):  # until the collection has started and every scrape waits on it
            if calls:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the collection lasts at least this: the reuse window below is as long
        release.set()
        bodies = await asyncio.gather(*scrapes)
        assert len(app._latest.bodies) == 4  # the fixed set: (format, gzip), never more
        again = await app.metrics(TEXT, False)  # within the window: the same collection, the same body
        assert len(calls) == 1 and again is bodies[0]
        while time.monotonic() < app._latest.reusable_until:
            await asyncio.sleep(0.01)
        await app.metrics(TEXT, False)
        return bodies

    bodies = asyncio.run(burst())
    app.close()
    assert len(calls) == 2 and len({id(b) for b in bodies}) == 4
    assert bodies[0] == b"" and gzip.decompress(bodies[-1]).rstrip().endswith(b"# EOF")


def test_single_flight_shares_one_call_among_concurrent_callers():
    calls = []
    release = threading.Event()

    def slow():
        calls.append(1)
        release.wait(5)
        return len(calls)

    flight = SingleFlight(slow)
    results = []
    threads = [threading.Thread(target=lambda: results.append(flight())) for _ in range(10)]
    for t in threads:
        t.start()
    assert wait_until(lambda: flight.callers() == 10)  # every caller is in the one flight
    release.set()
    for t in threads:
        t.join()
    assert results == [1] * 10 and len(calls) == 1
    assert flight() == 2  # a call after the flight landed runs anew


def test_sighup_reloads_and_keeps_the_old_config_when_the_new_one_is_bad(daemon, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("collectors: {sctp: false}\n")
    d = daemon(f"--config.file={config}")
    assert d.metrics().select("sockdiag_scrape_collector_success", collector="tcp")
    config.write_text("collectors: {tcp: false, sctp: false}\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for_log("configuration reloaded")
    assert not d.metrics().select("sockdiag_scrape_collector_success", collector="tcp")
    config.write_text("collectors: {tcp: maybe}\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for_log("reload refused")
    exposition = d.metrics()
    assert not exposition.select("sockdiag_scrape_collector_success", collector="tcp")
    assert exposition.select("sockdiag_scrape_collector_success", collector="udp")
    _, stderr = d.stop()
    refused = [line for line in stderr.splitlines() if "reload refused" in line]
    assert len(refused) == 1 and "collectors.tcp: expected true or false" in refused[0]
    assert "Traceback" not in stderr


def test_sigterm_stops_cleanly(daemon):
    d = daemon()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=10) == 0
    d.wait_for_log("stopping")


def test_port_in_use_is_one_line_and_exit_1(daemon, netns):
    daemon()
    second = subprocess.run(
        ["ip", "netns", "exec", netns.name, sys.executable, "-m", "sockdiag_exporter",
         f"--web.listen-address=127.0.0.1:{PORT}"], capture_output=True, text=True, timeout=20)
    assert second.returncode == 1
    lines = second.stderr.splitlines()
    assert len(lines) == 1 and "cannot listen on 127.0.0.1:19965: Address already in use" in lines[0]


def test_json_logs(daemon, tmp_path):
    """Every line is JSON, the warnings given while the exporter is being built included."""
    config = tmp_path / "config.yml"
    config.write_text(f"cgroups: {{enabled: true, mount: '{tmp_path}'}}\n")  # not a cgroup2 mount: a warning
    d = daemon("--log.format=json", "--log.level=debug", f"--config.file={config}")
    d.get("/metrics")
    _, stderr = d.stop()
    records = [json.loads(line) for line in stderr.splitlines()]
    assert any("listening on 127.0.0.1" in r["msg"] for r in records)
    assert any(r["msg"].startswith("cgroup attribution is off") and r["level"] == "warn" for r in records)
    assert all(set(r) >= {"ts", "level", "logger", "msg"} for r in records)



def test_new_connections_wait_in_the_backlog_while_a_collection_runs():
    """While a collection runs, the event loop leaves new connections in the kernel's accept queue (ss shows them
    there), COLLECTION_PAUSE at most; then it takes them, and serves them although the collection still runs."""
    release = threading.Event()

    class Slow:
        def collect(self):
            release.wait(10)
            return iter(())

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(f"127.0.0.1:{port}", App(Slow(), "/metrics"))
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as first:
            started = time.monotonic()  # the pause starts after this
            first.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wait_until(lambda: server.app._flying is not None)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
                queued = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                                        check=True).stdout.split()[1]
                second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = second.recv(100)
                waited = time.monotonic() - started
            assert queued == "1" and answer.startswith(b"HTTP/1.1 200") and waited >= COLLECTION_PAUSE
            assert server.app._flying is not None  # the collection still runs
    finally:
        release.set()
        server.shutdown()
        server.server_close()
