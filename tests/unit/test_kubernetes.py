"""The Kubernetes manifests grant exactly what namespace collection needs and nothing more."""

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "kubernetes")


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


def test_configmap_turns_namespaces_on_and_is_a_valid_config():
    from sockdiag_exporter.config import from_dict

    configmap = next(d for d in documents("daemonset.yaml") if d["kind"] == "ConfigMap")
    config = from_dict(yaml.safe_load(configmap["data"]["config.yml"]))
    assert config.namespaces.named and config.namespaces.processes


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
