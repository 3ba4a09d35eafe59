"""The attack suite in its short form (bench/attack.py --short): each attack against the real daemon in a namespace
of its own while a legitimate client scrapes every 0.5 s. Every legitimate scrape must succeed, the daemon live,
RSS and fds come back (2 MB, 5), plus each attack's own criteria; the p95 bound is 4x the idle p95 measured in the
same run (the strict 2x is the full run's: `sudo .venv/bin/python -m bench.attack`, README's security section)."""

import json
import os
import subprocess
import sys

import pytest

from bench.attack import ATTACKS, ROOT


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack(attack, tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, "-m", "bench.attack", "--short", "--only", attack, "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "exporter")))
    assert out.exists(), run.stdout[-2000:] + run.stderr[-2000:]
    [result] = json.loads(out.read_text())
    assert result["passed"], json.dumps(result, indent=1)
    assert run.returncode == 0, run.stderr[-2000:]
