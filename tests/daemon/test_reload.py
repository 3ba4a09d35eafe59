"""Reloads swap the whole collection plan at once: a scrape running during SIGHUP sees one configuration, never a
mix, and the exporter's own counters never go back."""

import signal
import threading

from helpers import Exposition

# Two configurations that differ in everything a collection reads: collectors, histograms, listeners, budget.
A = ("collectors: {tcp: true, udp: true, udplite: false, raw: false, mptcp: false, sctp: false, dccp: false,\n"
     "  unix: true, netlink: false, packet: false, vsock: false, xdp: false, tipc: false, smc: false, netstat: true,\n"
     "  flows: true}\n"
     "histograms: {enabled: true, buckets: [0, 1024]}\n"
     "listeners: {max_series: 0}\n"
     "memory: {collectors: []}\n")
B = ("collectors: {tcp: false, udp: true, udplite: true, raw: false, mptcp: false, sctp: false, dccp: false,\n"
     "  unix: false, netlink: true, packet: true, vsock: false, xdp: false, tipc: false, smc: false, netstat: false,\n"
     "  flows: false}\n"
     "histograms: {enabled: false}\n"
     "memory: {collectors: [udp, netlink]}\n")
COLLECTORS = {"A": {"tcp", "udp", "unix", "netstat", "flows"}, "B": {"udp", "udplite", "netlink", "packet"}}


def which(exposition: Exposition) -> str:
    """The configuration a scrape was collected with; fails if its parts belong to different ones."""
    collectors = {dict(k)["collector"] for k in exposition.select("sockdiag_scrape_collector_success")}
    names = [name for name, wanted in COLLECTORS.items() if collectors == wanted]
    assert len(names) == 1, f"collectors {sorted(collectors)} are neither configuration's"
    name = names[0]
    has = {
        "histograms": bool(exposition.select("sockdiag_socket_receive_queue_bytes_bucket")),
        "memory": bool(exposition.select("sockdiag_receive_buffer_bytes")),
        "tcp": bool(exposition.select("sockdiag_sockets", protocol="tcp")),
        "listeners folded": bool(exposition.select("sockdiag_listener_sockets", address="other")),
        "netlink": bool(exposition.select("sockdiag_sockets", family="netlink")),
        "flows": bool(exposition.select("sockdiag_flow_subscriber_up")),
    }
    expected = {"histograms": name == "A", "memory": name == "B", "tcp": name == "A",
                "listeners folded": name == "A", "netlink": name == "B", "flows": name == "A"}
    assert has == expected, f"a scrape with configuration {name}'s collectors has {has}"
    return name


def test_scrapes_during_200_reloads_each_see_one_whole_configuration(daemon, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(A)
    d = daemon(f"--config.file={config}")
    seen, dumps, errors = [], [], []
    stop = threading.Event()

    def scrape_in_a_loop():
        while not stop.is_set() and len(seen) < 5000:
            try:
                status, _, body = d.get("/metrics")
                assert status == 200, status
                exposition = Exposition(body.decode())
                seen.append(which(exposition))
                dumps.append(exposition.value("sockdiag_netlink_dumps_total"))
            except Exception as e:  # reported below, with the scrape it happened to
                errors.append(f"scrape {len(seen)}: {e}")
                return

    scraper = threading.Thread(target=scrape_in_a_loop)
    scraper.start()
    try:
        for i in range(200):
            staged = tmp_path / "staged.yml"
            staged.write_text(B if i % 2 == 0 else A)
            staged.replace(config)  # atomically, as a config management tool would: never half a file
            d.proc.send_signal(signal.SIGHUP)
            d.wait_for_log("configuration reloaded", count=i + 1)  # one reload at a time, each applied
    finally:
        stop.set()
        scraper.join(30)
    assert not errors, errors
    assert "A" in seen and "B" in seen, f"{len(seen)} scrapes saw only {set(seen)}"
    assert all(b >= a for a, b in zip(dumps, dumps[1:])), "sockdiag_netlink_dumps_total went back"
    assert which(d.metrics()) == "A"  # the last one written
    _, log = d.stop()
    assert "Traceback" not in log and "failed" not in log
