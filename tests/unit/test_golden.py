"""Golden replays, in the style of node_exporter's collector/fixtures/e2e-output.txt: dumps recorded from a real
kernel, and dumps built from the kernel's structs for the families this one lacks, go through the real collectors
(DiagSocket and Context with a replaying socket and /proc) and the whole exposition must equal a checked-in file.

No root and no kernel needed. After a deliberate change of the output, regenerate and review the diff:

    SOCKDIAG_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden.py

After a change of what is asked of the kernel, record again first: sudo .venv/bin/python tests/golden/record.py
"""

import difflib
import os
import re

import pytest

from golden.replay import Proc, Recording
from golden.synthetic import SyntheticKernel, proc_files
from helpers import make_scraper, render

from sockdiag_exporter.diag.netlink import DiagSocket

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")
RECORDING = os.path.join(GOLDEN, "kernel.json")

# The configurations the recording covers (tests/golden/record.py collects each): name -> config
KERNEL_CONFIGS = {
    "kernel-default": {},
    "kernel-everything": {
        "profile": "full",
        "memory": {"collectors": ["tcp", "udp", "udplite", "raw", "mptcp", "unix", "netlink", "packet"]},
        "histograms": {"buckets": [0, 100, 1000, 65536]},
        "listeners": {"max_series": 2},
        "port_groups": {"web": {"local": [8080]}, "dns": {"local": [5353], "remote": [5353]},
                        "queued": {"local": ["9000-9010"]}},
        "udp_receivers": {"max_series": 1},
        "ephemeral_ports": {"destinations": 3, "interval_seconds": 0},
    },
}
LACKING = ("sctp", "dccp", "raw", "vsock", "xdp", "tipc", "smc")


def normalized(text: str) -> str:
    """The exposition without what changes from run to run: durations, the Python version."""
    text = re.sub(r"^(sockdiag_scrape_collector_duration_seconds\{.*\}|sockdiag_collection_duration_seconds) .*$",
                  r"\1 0.0", text, flags=re.M)
    return re.sub(r'python_version="[^"]*"', 'python_version=""', text)


def collect(config: dict, connect, proc, collectors=()) -> str:
    # Not the flows collector: it counts live destroy events of this host (tests/unit/test_flows.py replays its own).
    config = dict(config, collectors=dict(config.get("collectors", {}), flows=False))
    scraper = make_scraper(config, collectors, make_diag=lambda: DiagSocket(connect=connect), proc=proc)
    try:
        return normalized(render(scraper))
    finally:
        scraper.close()


def matches_golden(name: str, text: str) -> None:
    path = os.path.join(GOLDEN, f"{name}.prom")
    if os.environ.get("SOCKDIAG_UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        expected = f.read()
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), path, "now", n=1))
        pytest.fail(f"the exposition differs from {path} (SOCKDIAG_UPDATE_GOLDEN=1 to accept):\n{diff[:6000]}")


@pytest.mark.parametrize("name", sorted(KERNEL_CONFIGS))
def test_a_recorded_kernel(name):
    recording = Recording.load(RECORDING)
    matches_golden(name, collect(KERNEL_CONFIGS[name], recording.connect, Proc(recording.proc)))


def test_families_this_kernel_lacks_built_from_their_structs():
    kernel = SyntheticKernel()
    text = collect({"port_groups": {"sctp": {"local": [9899]}}}, kernel.connect, Proc(proc_files()), LACKING)
    matches_golden("lacking-families", text)


def test_a_kernel_without_those_handlers():
    """Every one refused: handler unavailable, no socket series; raw falls back to /proc/net/raw."""
    kernel = SyntheticKernel(sockets=[])
    matches_golden("no-handlers", collect({}, kernel.connect, Proc(proc_files()), LACKING + ("netstat",)))
