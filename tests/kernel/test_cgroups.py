"""Sockets attributed to systemd units and containers through their cgroup v2 id, on a real cgroup2 hierarchy
mounted by the test (this host is cgroup v1 otherwise), and refused where ids cannot be trusted."""

import ctypes
import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from helpers import CLONE_NEWNET, cgroup2_hierarchy, scrape

from sockdiag_exporter.cgroups import CgroupMap, unavailable_reason

POD = "0f2c6e1a_3b4d_4c5e_8f9a_0123456789ab"
CGROUPS = {
    "web": "/system.slice/web.service",
    "pod": f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD}.slice/"
           "cri-containerd-4f1c2d3e4b5a6978.scope",
    "plain": "/work.slice/batch/job7",
}


@pytest.fixture
def cgroup2(tmp_path):
    with cgroup2_hierarchy(tmp_path, CGROUPS.values()) as mount:
        yield mount


def spawn_in(cgroup_dir, netns_name, listeners: int, connections: int, pending: int = 0):
    """A child process placed in cgroup_dir and netns_name, holding listeners with established connections (and
    with pending: a listener with that many connections waiting in its accept queue, at its limit)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on
        try:
            with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            fd = os.open(f"/run/netns/{netns_name}", os.O_RDONLY)
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                os._exit(2)
            keep = []
            for _ in range(listeners):
                server = socket.socket()
                server.bind(("127.0.0.1", 0))
                server.listen(5)
                keep.append(server)
                for _ in range(connections):
                    c = socket.create_connection(server.getsockname())
                    s, _ = server.accept()
                    keep += [c, s]
            if pending:
                full = socket.socket()
                full.bind(("127.0.0.1", 0))
                full.listen(pending - 1)  # the queue holds backlog + 1
                keep.append(full)
                keep += [socket.create_connection(full.getsockname()) for _ in range(pending)]
            os.write(write, b"r")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"r"
    os.close(read)
    return pid


def test_sockets_counted_per_unit_and_container(netns, cgroup2, caplog):
    children = [spawn_in(cgroup2 / CGROUPS["web"].lstrip("/"), netns.name, 2, 3),
                spawn_in(cgroup2 / CGROUPS["pod"].lstrip("/"), netns.name, 1, 1),
                spawn_in(cgroup2 / CGROUPS["plain"].lstrip("/"), netns.name, 1, 0)]
    try:
        with caplog.at_level(logging.WARNING):
            exposition = scrape(netns, "tcp", config={"cgroups": {"enabled": True, "mount": str(cgroup2)}})
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        got = {(dict(k)["cgroup"], dict(k)["state"]): int(v)
               for k, v in exposition.select("sockdiag_cgroup_sockets", family="inet", protocol="tcp").items()}
        assert got == {
            ("web.service", "listen"): 2, ("web.service", "established"): 12,
            (f"pod-{POD.replace('_', '-')}", "listen"): 1, (f"pod-{POD.replace('_', '-')}", "established"): 2,
            ("/work.slice/batch", "listen"): 1,  # no unit or container rule: the path, cut to depth 2
        }
        assert exposition.value("sockdiag_feature_enabled", feature="cgroup_attribution") == 1
    finally:
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


def test_the_cap_keeps_the_cgroup_in_trouble_then_the_largest(netns, cgroup2):
    children = [spawn_in(cgroup2 / CGROUPS["web"].lstrip("/"), netns.name, 1, 4),
                spawn_in(cgroup2 / CGROUPS["pod"].lstrip("/"), netns.name, 1, 2),
                spawn_in(cgroup2 / CGROUPS["plain"].lstrip("/"), netns.name, 0, 0, pending=2)]
    try:
        config = {"cgroups": {"enabled": True, "mount": str(cgroup2), "max_series": 2}}
        exposition = scrape(netns, "tcp", config=config)
        names = {dict(k)["cgroup"] for k in exposition.select("sockdiag_cgroup_sockets")}
        assert names == {"/work.slice/batch", "web.service", "other"}  # the full queue first, though smallest
        assert exposition.value("sockdiag_cgroup_sockets", cgroup="other", state="established") == 2 * 2
    finally:
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


def test_no_cgroup2_means_no_attribution_and_one_warning(netns, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        exposition = scrape(netns, "tcp", config={"cgroups": {"enabled": True, "mount": str(tmp_path)}})
    assert exposition.value("sockdiag_feature_enabled", feature="cgroup_attribution") == 0
    assert not exposition.select("sockdiag_cgroup_sockets")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"cgroup attribution is off: {unavailable_reason(str(tmp_path))}"]
    assert warnings[0].startswith(f"cgroup attribution is off: no cgroup2 hierarchy is mounted at {tmp_path}")


LAYOUTS = r"""
import json, subprocess, sys
from sockdiag_exporter.cgroups import default_mount, mounts, unavailable_reason
base = sys.argv[1]
run = lambda *command: subprocess.run(command, check=True)
for point in sorted((p for p, fstype, _ in mounts() if fstype in ("cgroup", "cgroup2")), key=len, reverse=True):
    run("umount", "-l", point)  # this mount namespace only: no cgroup file system left
seen = {"none": unavailable_reason(base)}
run("mount", "-t", "tmpfs", "none", base)
run("mkdir", base + "/named", base + "/unified")
run("mount", "-t", "cgroup", "-o", "none,name=sdtest", "none", base + "/named")
seen["v1"] = unavailable_reason(base)
run("mount", "-t", "cgroup2", "none", base + "/unified")
seen["hybrid"] = unavailable_reason(base)
seen["hybrid, unified"] = unavailable_reason(base + "/unified")
seen["found"] = default_mount()
print(json.dumps(seen))
"""


def test_the_reason_names_the_host_layout(tmp_path):
    """No cgroup, cgroup v1 only, and hybrid (cgroup2 at <v1 root>/unified), built for real in a private mount
    namespace: the message says which, and where cgroup2 is when it is elsewhere; empty cgroups.mount finds it."""
    base = str(tmp_path)
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", LAYOUTS, base],
                            capture_output=True, text=True, check=True)
    seen = json.loads(result.stdout)
    assert seen == {
        "none": f"no cgroup2 hierarchy is mounted at {base} (no cgroup is mounted)",
        "v1": f"no cgroup2 hierarchy is mounted at {base} (a cgroup v1-only host)",
        "hybrid": f"no cgroup2 hierarchy is mounted at {base}; cgroup2 is mounted at {base}/unified "
                  "(set cgroups.mount to it, or leave it empty to find it)",
        "hybrid, unified": None,
        "found": f"{base}/unified",
    }


def test_ids_are_refreshed_on_a_miss_at_most_once_a_second(cgroup2):
    now = [100.0]
    cgroups = CgroupMap(str(cgroup2), 2, clock=lambda: now[0])
    web = os.stat(cgroup2 / CGROUPS["web"].lstrip("/")).st_ino
    assert cgroups.name(web) == "web.service" and cgroups.name(0) == "none"
    late = cgroup2 / "system.slice" / "late.service"
    late.mkdir()
    try:
        assert cgroups.name(os.stat(late).st_ino) == "unknown"  # walked less than a second ago
        now[0] += 1.5
        assert cgroups.name(os.stat(late).st_ino) == "late.service"
    finally:
        late.rmdir()
