"""The monitoring mixin (deploy/mixin/) is the one source of the shipped rules, alerts and dashboards: rendering it
changes nothing, a changed shipped file is reported as drift, its _config reaches every rule, and promtool checks
and unit-tests the rules it renders."""

import json
import os
import re
import shutil
import subprocess
import sys

import _jsonnet
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIXIN = os.path.join(ROOT, "deploy", "mixin")
sys.path.insert(0, MIXIN)
import render  # deploy/mixin/render.py, imported after the path is set

SHIPPED = ("deploy/prometheus/rules.yml", "deploy/prometheus/alerts.yml", "grafana/dashboards")


def test_mixin_exposes_the_conventional_fields():
    mixin = render.evaluate()
    assert set(mixin["config"]) == {"sockdiagSelector", "runbookURLPattern", "thresholds"}
    assert mixin["rules"]["groups"] and mixin["alerts"]["groups"]
    assert sorted(mixin["dashboards"]) == sorted(os.listdir(os.path.join(ROOT, "grafana", "dashboards")))


def test_shipped_files_equal_the_rendered_mixin():
    result = subprocess.run([sys.executable, os.path.join(MIXIN, "render.py"), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    rendered = render.render()
    for path, text in rendered.items():
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            assert f.read() == text, f"{path} differs from the mixin: run python3 deploy/mixin/render.py"


def test_drift_is_reported(tmp_path):
    for path in SHIPPED:
        source, target = os.path.join(ROOT, path), tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if os.path.isdir(source) else shutil.copy)(source, target)
    assert render.stale_files(str(tmp_path)) == []
    alerts = tmp_path / "deploy/prometheus/alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 10m", "for: 11m", 1))
    (tmp_path / "grafana/dashboards/extra.json").write_text("{}")
    dashboard = tmp_path / "grafana/dashboards/sockdiag-listeners.json"
    dashboard.write_text(dashboard.read_text().replace('"Listeners"', '"Listener"', 1))
    assert render.stale_files(str(tmp_path)) == ["deploy/prometheus/alerts.yml",
                                                 "grafana/dashboards/sockdiag-listeners.json",
                                                 "grafana/dashboards/extra.json"]


def rule_exprs(mixin):
    return [r["expr"] for part in ("rules", "alerts") for g in mixin[part]["groups"] for r in g["rules"]]


def raw_series(expr):
    """Every exporter series a rule reads (not recording rules), with what follows its name."""
    return re.findall(r"(?<![\w:])(sockdiag_[a-z0-9_]+|up)\b(\{[^}]*\})?", expr)


def test_config_reaches_every_rule(tmp_path):
    selector = 'job=~"sockdiag|node-sockets", cluster="eu1"'
    mixin = render.evaluate({"sockdiagSelector": selector, "runbookURLPattern": "https://runbooks.example/%s",
                             "thresholds": {"close_wait_sockets": 5}})
    read = [series for expr in rule_exprs(mixin) for series in raw_series(expr)]
    assert read
    for name, matchers in read:
        assert matchers.startswith("{" + selector), f"{name}{matchers} does not use the selector"
    thresholds = {r["record"]: r["expr"] for g in mixin["rules"]["groups"] for r in g["rules"]
                  if r["record"].startswith("sockdiag:threshold:")}
    assert thresholds["sockdiag:threshold:close_wait_sockets"] == "vector(5)"
    assert thresholds["sockdiag:threshold:listener_fill_ratio"] == "vector(0.8)"  # the others keep their defaults
    for alert in (r for g in mixin["alerts"]["groups"] for r in g["rules"]):
        assert alert["annotations"]["runbook_url"] == "https://runbooks.example/" + alert["alert"].lower()
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(mixin["rules"]))
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(mixin["alerts"]))
    result = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml"), str(tmp_path / "alerts.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_selector_is_the_job_of_the_shipped_scrape_configs():
    mixin = render.evaluate()
    assert mixin["config"]["sockdiagSelector"] == 'job="sockdiag"'
    for name, matchers in (s for expr in rule_exprs(mixin) for s in raw_series(expr)):
        assert matchers.startswith('{job="sockdiag"'), f"{name}{matchers}"


def test_readme_example_imports_the_mixin_as_jsonnet_bundler_vendors_it(tmp_path):
    """jb keeps only the mixin's folder under vendor/<repository path>/deploy/mixin: the mixin must stand alone
    there, and README's sockdiag.libsonnet and jsonnet commands must give the configured rules and dashboards."""
    vendored = tmp_path / "vendor" / "github.com" / "sockdiag-exporter" / "sockdiag-exporter" / "deploy" / "mixin"
    shutil.copytree(MIXIN, vendored, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    (tmp_path / "sockdiag.libsonnet").write_text(readme.split("```jsonnet\n// sockdiag.libsonnet\n")[1].split("```")[0])
    (commands,) = [block.split("```")[0] for block in readme.split("```sh\n")[1:]
                   if block.startswith("jsonnet -J vendor")]
    outputs = {}
    for line in commands.splitlines():
        m = re.fullmatch(r"jsonnet -J vendor (-S |-m dashboards )-e '(.+)'(?: > (\S+))?", line)
        assert m, line
        value = json.loads(_jsonnet.evaluate_snippet("cli", m.group(2), jpathdir=[str(tmp_path / "vendor"),
                                                                                   str(tmp_path)]))
        outputs[m.group(3) or "dashboards"] = value
    rules = yaml.safe_load(outputs["sockdiag-rules.yaml"])
    exprs = {r["record"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert exprs["sockdiag:threshold:close_wait_sockets"] == "vector(500)"
    assert exprs["sockdiag:threshold:listener_fill_ratio"] == "vector(0.8)"
    assert 'sockdiag_sockets{job="sockdiag-exporter"' in exprs["instance:sockdiag_sockets:sum"]
    alerts = yaml.safe_load(outputs["sockdiag-alerts.yaml"])
    assert all(r["annotations"]["runbook_url"].startswith("https://runbooks.example.com/sockdiag/")
               for g in alerts["groups"] for r in g["rules"])
    assert sorted(outputs["dashboards"]) == ["sockdiag-listeners.json", "sockdiag-overview.json"]
