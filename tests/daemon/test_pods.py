"""A pod as containerd or CRI-O leaves it on a node, collected with the shipped DaemonSet configuration: its network
namespace in /run/netns as cni-<uuid>, its processes in a cgroup of the kubelet's systemd driver. The namespace
keeps its name and gets its pod, with the UID dashed as kube-state-metrics' uid label has it."""

import ctypes
import os
import socket
import subprocess
import time
import uuid

import yaml

from helpers import CLONE_NEWNET, ROOT_DIR, cgroup2_hierarchy

UID = "7d5c1b3a-9e2f-4a6b-8c0d-1e2f3a4b5c6d"
CONTAINER = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
POD_CGROUP = (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
              f"cri-containerd-{CONTAINER}.scope")


def shipped_config() -> dict:
    """config.yml of the ConfigMap in deploy/kubernetes/daemonset.yaml."""
    with open(os.path.join(ROOT_DIR, "deploy", "kubernetes", "daemonset.yaml")) as f:
        configmap = next(d for d in yaml.safe_load_all(f) if d and d["kind"] == "ConfigMap")
    return yaml.safe_load(configmap["data"]["config.yml"])


def pod_process(cgroup_dir) -> int:
    """A child in the pod's cgroup and a network namespace of its own, with lo up and a listener."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            server = socket.socket()
            server.bind(("127.0.0.1", 8443))
            server.listen(8)
            os.write(write, b"r")
            time.sleep(3600)  # until killed
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"r"
    return pid


def test_a_cni_namespace_in_a_systemd_driver_pod_is_named_and_attributed(daemon, tmp_path):
    with cgroup2_hierarchy(tmp_path, [POD_CGROUP]) as mount:
        pid = pod_process(mount / POD_CGROUP.lstrip("/"))
        try:
            config = shipped_config()
            config["cgroups"]["mount"] = str(mount)  # the test's cgroup2 stands for the host's /sys/fs/cgroup
            path = tmp_path / "config.yml"
            path.write_text(yaml.safe_dump(config))
            name = f"cni-{uuid.uuid4()}"
            # /run/netns of the exporter's own mount namespace holds the pod's namespace, as the node's would
            setup = (f"mount -t tmpfs none /run/netns && touch /run/netns/{name} && "
                     f"mount --bind /proc/{pid}/ns/net /run/netns/{name}")
            d = daemon(f"--config.file={path}",
                       wrap=["unshare", "--mount", "--propagation", "private", "sh", "-ec", f'{setup}; exec "$@"',
                             "sh"])
            exposition = d.metrics()
            (info,) = [dict(k) for k in exposition.select("sockdiag_netns_info", netns=name)]
            assert info["pod_uid"] == UID and info["container_id"] == CONTAINER
            assert info["container"] == f"pod-{UID}" and info["cgroup"] == POD_CGROUP
            assert exposition.value("sockdiag_listener_sockets", netns=name, address="127.0.0.1:8443") == 1
            cgroups = {dict(k)["cgroup"] for k in exposition.select("sockdiag_cgroup_sockets", netns=name)}
            assert f"pod-{UID}" in cgroups
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
