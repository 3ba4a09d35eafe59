#!/usr/bin/env python3
"""Render the sockdiag mixin (deploy/mixin/mixin.libsonnet) into the files the project ships.

    python3 deploy/mixin/render.py           # rewrite deploy/prometheus/{rules,alerts}.yml, grafana/dashboards/
    python3 deploy/mixin/render.py --check   # exit 1 if a shipped file differs from the mixin's output

Build-time only: the Python jsonnet bindings (`pip install -e '.[dashboards]'`, pinned in pyproject.toml).
The shipped files are the mixin rendered with its default _config; tests/unit/test_mixin.py fails on drift.
"""

import argparse
import json
import os
import sys
from typing import Optional

import _jsonnet
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MIXIN = os.path.join(HERE, "mixin.libsonnet")

RULES_HEADER = """\
# Recording rules of sockdiag_exporter: the thresholds the alerts in alerts.yml compare against
# (sockdiag:threshold:*, one constant series each) and the aggregations the dashboards and the alerts use.
# Load it together with alerts.yml (SockdiagRecordingRulesMissing fires without it).
#
# Generated from the sockdiag mixin (deploy/mixin/) by deploy/mixin/render.py: change thresholds, the job
# selector or the runbook links in the mixin's _config, or edit your copy of this file; do not edit it here.
"""

ALERTS_HEADER = """\
# Alerts of sockdiag_exporter, following the monitoring-mixins conventions: CamelCase names prefixed "Sockdiag",
# a severity label (warning or critical), and summary, description and runbook_url annotations.
# Load together with rules.yml: the alerts compare against its sockdiag:threshold:* series.
# The alerts select the exporter's job with job="sockdiag", the job every shipped scrape configuration yields
# (deploy/prometheus/prometheus.example.yml, deploy/kubernetes/); set _config.sockdiagSelector in the mixin for
# another. Runbooks: docs/runbooks.md, one section per alert.
#
# Generated from the sockdiag mixin (deploy/mixin/) by deploy/mixin/render.py; do not edit it here.
"""


# jsonnet sorts an object's keys; rules read better in Prometheus's documented order.
KEY_ORDER = ("name", "rules", "record", "alert", "expr", "for", "labels", "annotations", "summary", "description",
             "runbook_url")


class _Dumper(yaml.SafeDumper):
    """Literal blocks for multi-line strings (PromQL), folded ones for long text (descriptions)."""


def _represent_str(dumper, text):
    style = "|" if "\n" in text else ">" if len(text) > 100 and " " in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def _ordered(value):
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (KEY_ORDER.index(k) if k in KEY_ORDER else len(KEY_ORDER), k))
        return {k: _ordered(value[k]) for k in keys}
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


def _yaml(header: str, rules: dict) -> str:
    return header + yaml.dump(_ordered(rules), Dumper=_Dumper, sort_keys=False, width=116, allow_unicode=True)


def dashboard_json(dashboard: dict) -> str:
    """The dashboard file as grafana/generate.py writes it (sorted keys, two-space indent)."""
    return json.dumps(dashboard, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def evaluate(config: Optional[dict] = None) -> dict:
    """The mixin as JSON; config is merged into _config (thresholds key by key), as a user's override would."""
    snippet = "local mixin = import 'mixin.libsonnet';\n"
    if config:
        snippet += "mixin + { _config:: std.mergePatch(mixin._config, %s) }" % json.dumps(config)
    else:
        snippet += "mixin"
    snippet = ("local m = (%s);\n{ rules: m.prometheusRules, alerts: m.prometheusAlerts, "
               "dashboards: m.grafanaDashboards, config: m._config }") % snippet
    return json.loads(_jsonnet.evaluate_snippet(os.path.join(HERE, "render.jsonnet"), snippet, jpathdir=[HERE]))


def render(config: Optional[dict] = None) -> dict:
    """Shipped file (path relative to the repository) -> its content."""
    mixin = evaluate(config)
    files = {
        "deploy/prometheus/rules.yml": _yaml(RULES_HEADER, mixin["rules"]),
        "deploy/prometheus/alerts.yml": _yaml(ALERTS_HEADER, mixin["alerts"]),
    }
    for name, dashboard in mixin["dashboards"].items():
        files[f"grafana/dashboards/{name}"] = dashboard_json(dashboard)
    return files


def stale_files(root: str = ROOT) -> list:
    """Shipped files that differ from the mixin's output, or that the mixin does not produce (dashboards)."""
    rendered = render()
    stale = [path for path, text in rendered.items()
             if not os.path.exists(os.path.join(root, path))
             or open(os.path.join(root, path), encoding="utf-8").read() != text]
    dashboards = os.path.join(root, "grafana", "dashboards")
    stale += sorted(f"grafana/dashboards/{name}" for name in os.listdir(dashboards)
                    if f"grafana/dashboards/{name}" not in rendered)
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a shipped file differs from the mixin")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"out of date: {', '.join(stale)}; run python3 deploy/mixin/render.py", file=sys.stderr)
            return 1
        return 0
    for path, text in render().items():
        with open(os.path.join(ROOT, path), "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
