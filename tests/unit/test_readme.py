"""README stays true: every metric, config key and collector is documented; the test command is CI's."""

import dataclasses
import os
import re
import subprocess

from sockdiag_exporter import metrics, overview
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


def quick_start() -> list:
    """README's two set-up commands: (run command, test command)."""
    section = README.split("## Quick start")[1].split("\n## ")[0]
    return re.findall(r"^```sh\n(.*)\n```$", section, re.M)


AS_ROOT = 'as_root=$([ "$(id -u)" = 0 ] || echo sudo); '


def test_ci_runs_the_readme_test_command_and_installs_nothing_first():
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert "<!-- ci: test command" in README and "ci: test command" in ci
    command = README.split("<!-- ci: test command")[1].split("```sh\n")[1].split("\n")[0]
    assert command == quick_start()[1] and command.endswith("python -m pytest")
    before = ci.split('bash -euo pipefail -c "$cmd"')[0]
    assert "apt-get" not in before and "sudo" not in re.sub(r"^#.*$", "", before, flags=re.M)


def test_the_quick_start_works_as_root_and_with_sudo():
    """No bare sudo (a bare root shell has none): every root step goes through $as_root, which is empty for root and
    sudo for anyone else, in sh and bash; the test command installs what the tests need, chromium included."""
    run, test = quick_start()
    for command in (run, test):
        assert command.startswith(AS_ROOT)
        assert re.findall(r"(?<!echo )\bsudo\b", command[len(AS_ROOT):]) == []
        assert "$as_root apt-get update && $as_root apt-get install -y python3-venv" in command
    assert run.endswith(".venv/bin/pip install . && .venv/bin/sockdiag-exporter")
    for package in ("python3-venv", "iproute2", "prometheus", "slowhttptest", "testssl.sh", "chromium"):
        assert f" {package} " in test.split("&&")[1] + " "
    assert "(command -v npm >/dev/null || $as_root apt-get install -y nodejs npm)" in test
    assert test.endswith("&& $as_root .venv/bin/python -m pytest")
    probe = AS_ROOT + 'printf "[%s]" "$as_root"'
    expected = "[]" if os.geteuid() == 0 else "[sudo]"
    for shell in ("sh", "bash"):
        assert subprocess.run([shell, "-euc", probe], capture_output=True, text=True).stdout == expected
        if os.geteuid() == 0:  # and as a user
            nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", shell, "-euc",
                                     probe], capture_output=True, text=True)
            assert nobody.stdout == "[sudo]", nobody.stderr


def test_the_run_command_says_where_to_look_and_how_to_stop():
    section = README.split("## Quick start")[1].split("<!-- ci: test command")[0]
    before_run = section.split("```sh")[0]
    assert "<http://localhost:9965/>" in before_run and "foreground" in before_run and "Ctrl-C" in before_run


def test_readme_shows_the_landing_page_screenshot():
    assert "![The landing page" in README and "](docs/landing-page.png)" in README
    with open(os.path.join(ROOT, "docs", "landing-page.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_documentation_urls_are_the_ones_readme_states():
    """The alerts' runbook links, the landing page's links and the installed copies are all named in README."""
    config = open(os.path.join(ROOT, "deploy", "mixin", "config.libsonnet"), encoding="utf-8").read()
    pattern = re.search(r"runbookURLPattern: '([^']+)'", config).group(1)
    assert pattern == overview.RUNBOOKS_URL + "#%s"
    assert f"`{overview.RUNBOOKS_URL}#<alert name in lower case>`" in " ".join(README.split())
    assert f"<{overview.PROJECT_URL}>" in README and overview.README_METRICS_URL.endswith("#metrics")
    assert "\n## Metrics\n" in README
    assert f"`{overview.DOC_DIR}/runbooks.md`" in README
    for name in ("sockdiag-exporter.service", "sockdiag-exporter.socket"):
        unit = open(os.path.join(ROOT, "deploy", "systemd", name), encoding="utf-8").read()
        documentation = re.search(r"^Documentation=(.*)$", unit, re.M).group(1).split()
        assert documentation == ["man:sockdiag-exporter(1)", f"file:{overview.DOC_DIR}/README.md",
                                 f"file:{overview.DOC_DIR}/runbooks.md"]
    docs = open(os.path.join(ROOT, "packaging", "debian", "sockdiag-exporter.docs"), encoding="utf-8").read().split()
    spec = open(os.path.join(ROOT, "packaging", "rpm", "sockdiag-exporter.spec"), encoding="utf-8").read()
    assert docs == ["README.md", "docs/runbooks.md"] and "%doc README.md docs/runbooks.md" in spec
