"""README stays true: every metric, config key and collector is documented; the test command is CI's."""

import dataclasses
import os
import re

from sockdiag_exporter import metrics
from sockdiag_exporter.collectors import REGISTRY
from sockdiag_exporter.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_every_metric_has_a_table_row_with_its_type_and_labels():
    for metric in metrics.ALL:
        name = metric.name + ("_total" if metric.kind == "counter" else "")
        row = re.search(rf"^\| `{name}` \| (\w+) \|([^|]*)\|", README, re.M)
        assert row, f"{name} has no row in README's metrics table"
        assert row.group(1) == metric.kind
        assert [x.strip() for x in row.group(2).split(",") if x.strip()] == list(metric.labels)


def test_every_config_key_and_collector_is_documented():
    config = Config()
    for section in ("web", "log", "netlink", "flows"):
        for field in dataclasses.fields(getattr(config, section)):
            assert f"`{section}.{field.name}`" in README
    for name in REGISTRY:
        assert f"`{name}`" in README


def test_ci_runs_the_readme_test_command():
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert "<!-- ci: test command" in README and "ci: test command" in ci
    command = README.split("<!-- ci: test command")[1].split("```sh\n")[1].split("\n")[0]
    assert command.endswith("python -m pytest")
