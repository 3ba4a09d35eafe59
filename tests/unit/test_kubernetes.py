"""The Kubernetes manifests grant exactly what namespace collection needs and nothing more, run the image that
packaging/build-image builds, and are valid for every Kubernetes version kubernetes-validate knows."""

import glob
import os
import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from sockdiag_exporter import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "kubernetes")
MANIFESTS = sorted(glob.glob(os.path.join(K8S, "*.yaml")))  # prometheus-scrape.yml is a Prometheus configuration
VALIDATE = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")


def documents(name):
    with open(os.path.join(K8S, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_daemonset_security_settings():
    daemonset = next(d for d in documents("daemonset.yaml") if d["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and sorted(sc["capabilities"]["add"]) == ["SYS_ADMIN", "SYS_PTRACE"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["resources"]["limits"]["memory"] and container["resources"]["limits"]["cpu"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/run/netns"]["readOnly"] and mounts["/run/netns"]["mountPropagation"] == "HostToContainer"
    assert all(m.get("readOnly") for m in mounts.values())
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths[mounts["/host/sys/fs/cgroup"]["name"]] == "/sys/fs/cgroup"


def test_daemonset_runs_the_image_build_image_makes():
    daemonset = next(d for d in documents("daemonset.yaml") if d["kind"] == "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    built = subprocess.run([os.path.join(ROOT, "packaging", "build-image"), "--name"], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert container["image"] == built and built.endswith(f":{__version__}")


def test_configmap_turns_namespaces_on_and_is_a_valid_config():
    from sockdiag_exporter.config import from_dict

    configmap = next(d for d in documents("daemonset.yaml") if d["kind"] == "ConfigMap")
    config = from_dict(yaml.safe_load(configmap["data"]["config.yml"]))
    assert config.namespaces.named and config.namespaces.processes
    assert config.cgroups.enabled and config.cgroups.mount == "/host/sys/fs/cgroup"  # the host's, mounted there


def test_service_and_scrape_configs_point_at_the_metrics_port():
    service, monitor = documents("service.yaml")
    daemonset = next(d for d in documents("daemonset.yaml") if d["kind"] == "DaemonSet")
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == labels and service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert monitor["kind"] == "ServiceMonitor" and monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # The job each yields is checked against the rules' selector by a real Prometheus in
    # tests/e2e/test_prometheus_e2e.py (test_every_shipped_scrape_config_yields_the_job_the_rules_select).
    (job,) = documents("prometheus-scrape.yml")[0]["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    assert job["job_name"] == "sockdiag"  # the job name the alerts select


def kinds(paths):
    return sorted(d["kind"] for path in paths for d in documents(os.path.basename(path)))


@pytest.mark.parametrize("version", [kubernetes_validate.utils.all_versions()[0], kubernetes_validate.latest_version()])
def test_manifests_pass_kubernetes_validate_strict(version):
    result = subprocess.run([VALIDATE, "--strict", "--kubernetes-version", version, *MANIFESTS], capture_output=True,
                            text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.findall(r"passed for resource (\w+)/", output)
    no_schema = re.findall(r"Couldn't find schema for kind (\w+)", output)
    # Every resource passed but the ServiceMonitor, a Prometheus Operator CRD kubernetes-validate has no schema for.
    assert no_schema == ["ServiceMonitor"]
    assert sorted(passed) == sorted(k.lower() for k in kinds(MANIFESTS) if k != "ServiceMonitor")


def test_kubernetes_validate_strict_refuses_an_unknown_field(tmp_path):
    broken = tmp_path / "daemonset.yaml"
    with open(os.path.join(K8S, "daemonset.yaml")) as f:
        broken.write_text(f.read().replace("hostPID:", "hostPid:"))
    result = subprocess.run([VALIDATE, "--strict", str(broken)], capture_output=True, text=True)
    assert result.returncode != 0 and "'hostPid' was unexpected" in result.stdout + result.stderr
