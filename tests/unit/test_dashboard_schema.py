"""The shipped dashboards type-check against Grafana's published schema (@grafana/schema, with tsc), and the check
fails for a dashboard with a misspelt field, a value of the wrong type or outside an enum, or an unknown panel
type. Needs `npm ci --prefix grafana/schema-check` (README's test command runs it)."""

import copy
import glob
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "grafana", "schema-check", "check.py")
DASHBOARD_FILES = sorted(glob.glob(os.path.join(ROOT, "grafana", "dashboards", "*.json")))


def run_check(*paths):
    return subprocess.run([sys.executable, CHECK, *paths], capture_output=True, text=True)


def test_shipped_dashboards_match_grafanas_schema():
    assert DASHBOARD_FILES
    result = run_check(*DASHBOARD_FILES)
    assert result.returncode == 0, result.stderr


def first_panel(dashboard, kind):
    return next(p for p in dashboard["panels"] if p["type"] == kind)


def misspelt_option(d):
    options = first_panel(d, "timeseries")["options"]
    options["legnd"] = options.pop("legend")


def misspelt_top_level_field(d):
    d["schemaversion"] = d.pop("schemaVersion")


def misspelt_target_field(d):
    target = first_panel(d, "stat")["targets"][0]
    target["legend_format"] = target.pop("legendFormat")


def wrong_type(d):
    first_panel(d, "timeseries")["gridPos"]["h"] = "8"


def value_outside_enum(d):
    first_panel(d, "timeseries")["options"]["legend"]["displayMode"] = "grid"


def wrong_custom_field_type(d):
    first_panel(d, "timeseries")["fieldConfig"]["defaults"]["custom"]["lineWidth"] = "thin"


def unknown_panel_type(d):
    first_panel(d, "stat")["type"] = "sparkles"


def variable_without_name(d):
    del d["templating"]["list"][1]["name"]


BREAKAGES = [misspelt_option, misspelt_top_level_field, misspelt_target_field, wrong_type, value_outside_enum,
             wrong_custom_field_type, unknown_panel_type, variable_without_name]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__)
def test_a_broken_dashboard_fails_the_check(tmp_path, breakage):
    with open(os.path.join(ROOT, "grafana", "dashboards", "sockdiag-overview.json"), encoding="utf-8") as f:
        dashboard = json.load(f)
    broken = copy.deepcopy(dashboard)
    breakage(broken)
    assert broken != dashboard
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = run_check(str(path))
    assert result.returncode == 1, f"{breakage.__name__} passed the schema check"
    assert "broken.ts(" in result.stderr and "error TS" in result.stderr, result.stderr
