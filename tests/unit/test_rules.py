"""Prometheus rules rendered from the mixin (deploy/mixin/, shipped as deploy/prometheus/*.yml): promtool accepts
them, every alert has a firing and a not-firing unit test (deploy/prometheus/tests, run against a fresh render),
the mixin conventions hold, every runbook link lands on a section, and every metric they use is one the exporter
serves."""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from sockdiag_exporter import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROM = os.path.join(ROOT, "deploy", "prometheus")
RULE_FILES = [os.path.join(PROM, "rules.yml"), os.path.join(PROM, "alerts.yml")]
UNIT_TESTS = sorted(glob.glob(os.path.join(PROM, "tests", "*.yml")))
RUNBOOKS = os.path.join(ROOT, "docs", "runbooks.md")
RUNBOOK_BASE = "https://github.com/sockdiag-exporter/sockdiag-exporter/blob/main/docs/runbooks.md#"
sys.path.insert(0, os.path.join(ROOT, "deploy", "mixin"))
import render as mixin  # deploy/mixin/render.py, imported after the path is set


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


RENDERED = mixin.evaluate()
ALERTS = [rule for group in RENDERED["alerts"]["groups"] for rule in group["rules"]]
RECORDS = [rule for group in RENDERED["rules"]["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def rendered_rules(tmp_path_factory):
    """deploy/prometheus as the mixin renders it now (rules.yml, alerts.yml) with the promtool unit tests beside."""
    prom = tmp_path_factory.mktemp("rendered") / "prometheus"
    prom.mkdir()
    for path, text in mixin.render().items():
        if path.startswith("deploy/prometheus/"):
            (prom / os.path.basename(path)).write_text(text, encoding="utf-8")
    shutil.copytree(os.path.join(PROM, "tests"), prom / "tests")
    return prom


def exporter_series_names():
    """Every sample name the exporter can serve (counters with _total, histograms' three series)."""
    names = set()
    for m in metrics.ALL:
        if m.kind == "counter":
            names.add(m.name + "_total")
        elif m.kind == "gaugehistogram":
            names.update(m.name + suffix for suffix in ("_bucket", "_gcount", "_gsum"))
        elif m.kind == "histogram":
            names.update(m.name + suffix for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(m.name)
    return names


def promql_names(expr):
    """Metric and recording-rule names in a PromQL expression (string literals removed first)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b(sockdiag_[a-z0-9_]+|[a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b", expr))


def promtool(*args):
    result = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("name", [os.path.basename(p) for p in RULE_FILES])
def test_promtool_check_rules(rendered_rules, name):
    assert "SUCCESS" in promtool("check", "rules", str(rendered_rules / name))


def test_promtool_check_example_config():
    out = promtool("check", "config", os.path.join(PROM, "prometheus.example.yml"))
    assert "2 rule files found" in out


def test_promtool_unit_tests_pass(rendered_rules):
    assert UNIT_TESTS
    promtool("test", "rules", *sorted(str(p) for p in (rendered_rules / "tests").glob("*.yml")))


def test_every_alert_has_a_firing_and_a_not_firing_unit_test():
    firing, silent = set(), set()
    for path in UNIT_TESTS:
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a["alert"] for a in ALERTS}
    assert not names - firing, f"alerts without a firing test: {sorted(names - firing)}"
    assert not names - silent, f"alerts without a not-firing test: {sorted(names - silent)}"
    assert firing | silent <= names, f"tests of unknown alerts: {sorted((firing | silent) - names)}"


def duration_seconds(text):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


def github_anchor(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_alerts_follow_mixin_conventions_and_link_runbook_sections():
    runbooks = open(RUNBOOKS, encoding="utf-8").read()
    headings = re.findall(r"^## (.+)$", runbooks, re.M)
    anchors = {github_anchor(h) for h in headings}
    names = [a["alert"] for a in ALERTS]
    assert len(names) == len(set(names))
    severities = set()
    for alert in ALERTS:
        name = alert["alert"]
        assert re.fullmatch(r"Sockdiag(?:[A-Z][a-z]+|TCP|UDP)+", name), name
        assert set(alert["labels"]) == {"severity"} and alert["labels"]["severity"] in ("warning", "critical")
        severities.add(alert["labels"]["severity"])
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert alert["annotations"]["runbook_url"] == RUNBOOK_BASE + name.lower()
        assert name.lower() in anchors, f"docs/runbooks.md has no section for {name}"
        assert duration_seconds(alert["for"]) >= 300, f"{name}: for: {alert['for']} is too short for production"
    assert severities == {"warning", "critical"}
    stale = {h for h in headings if h.startswith("Sockdiag")} - set(names)
    assert not stale, f"runbook sections without an alert: {stale}"
    for section in names:
        body = runbooks.split(f"## {section}\n")[1].split("\n## ")[0]
        for part in ("**Meaning.**", "**Impact.**", "**Diagnosis.**", "**Mitigation.**"):
            assert part in body, f"runbook {section}: no {part}"


def test_thresholds_are_recording_rules_not_numbers_in_alerts():
    thresholds = {r["record"]: r["expr"] for r in RECORDS if r["record"].startswith("sockdiag:threshold:")}
    assert thresholds
    for name, expr in thresholds.items():
        assert re.fullmatch(r"vector\([0-9.]+\)", expr.strip()), f"{name}: {expr}"
    used = set()
    for alert in ALERTS:
        expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', alert["expr"])
        used |= set(re.findall(r"sockdiag:threshold:\w+", expr))
        numbers = re.findall(r"(?<![\w:.])\d+(?:\.\d+)?", re.sub(r"[A-Za-z_:][\w:]*", "", expr))
        assert set(numbers) <= {"0"}, f"{alert['alert']}: literal thresholds {numbers}; use a recording rule"
    assert used == set(thresholds), f"thresholds no alert uses: {set(thresholds) - used}"
    runbooks = open(RUNBOOKS, encoding="utf-8").read()
    for name, expr in thresholds.items():
        default = expr.strip()[len("vector("):-1]
        assert re.search(rf"^\| `{re.escape(name)}` \| {re.escape(default)}\b", runbooks, re.M), \
            f"{name} (default {default}) is not in the runbooks' threshold table"


def test_recording_rule_names_and_inputs():
    served = exporter_series_names()
    recorded = {r["record"] for r in RECORDS}
    for rule in RECORDS:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
    for rule in RECORDS + ALERTS:
        for name in promql_names(rule["expr"]):
            assert name in served or name in recorded, f"{rule.get('record') or rule['alert']} uses unknown {name}"
