"""Who owns a cgroup path: pods named by their dashed UID (kube-state-metrics' uid) from both cgroup drivers,
containers of every engine by their id, machines and systemd units."""

import pytest

from sockdiag_exporter.containers import Owner, owner

UID = "0f2c6e1a-3b4d-4c5e-8f9a-0123456789ab"
CID = "4f1c2d3e4b5a6978e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1"


@pytest.mark.parametrize("cgroup,expected", [
    # the kubelet's systemd cgroup driver: the UID with underscores in the slice name
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
     f"cri-containerd-{CID}.scope", Owner(f"pod-{UID}", UID, CID)),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope", Owner(f"pod-{UID}", UID, CID)),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice/"
     f"docker-{CID}.scope", Owner(f"pod-{UID}", UID, CID)),
    # the cgroupfs driver: the UID as it is, the container id as a folder; guaranteed pods have no QoS folder
    (f"/kubepods/burstable/pod{UID}/{CID}", Owner(f"pod-{UID}", UID, CID)),
    (f"/kubepods/pod{UID}/{CID}", Owner(f"pod-{UID}", UID, CID)),
    (f"/kubepods/besteffort/pod{UID}", Owner(f"pod-{UID}", UID, "")),  # the pod's own cgroup
    # containers outside Kubernetes
    (f"/system.slice/docker-{CID}.scope", Owner(CID[:12], "", CID)),
    (f"/docker/{CID}", Owner(CID[:12], "", CID)),
    (f"/machine.slice/libpod-{CID}.scope", Owner(CID[:12], "", CID)),
    ("/machine.slice/machine-web01.scope", Owner("web01", "", "")),
    ("/system.slice/nginx.service", Owner("nginx.service", "", "")),
    ("/user.slice", Owner("", "", "")),
    ("", Owner("", "", "")),
])
def test_owners_of_cgroup_paths(cgroup, expected):
    assert owner(cgroup) == expected
