"""The shipped systemd unit: hardened as promised, clean under systemd-analyze verify, exposure as in README."""

import configparser
import os
import re
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = os.path.join(ROOT, "deploy", "systemd")
SERVICE = os.path.join(UNITS, "sockdiag-exporter.service")


def settings(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    with open(path) as f:
        parser.read_file(f)
    return parser["Service"]


def test_service_is_hardened_and_unprivileged():
    s = settings(SERVICE)
    assert s["Type"] == "notify" and s["WatchdogSec"] and s["DynamicUser"] == "yes"
    assert s["CapabilityBoundingSet"] == "" and s["NoNewPrivileges"] == "yes"
    assert s["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"]
    for key, value in (("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("MemoryDenyWriteExecute", "yes"), ("ProtectKernelModules", "yes")):
        assert s[key] == value, key
    assert "@system-service" in open(SERVICE).read()
    assert "PrivateNetwork" not in s  # it would hide the host's sockets
    assert "/etc/default/sockdiag-exporter" in s["EnvironmentFile"] or "sysconfig" in s["EnvironmentFile"]


def test_units_verify_cleanly(tmp_path):
    """systemd-analyze verify in a scratch root holding the units, systemd's targets and stub executables."""
    shutil.copytree("/usr/lib/systemd/system", tmp_path / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(UNITS, tmp_path / "etc/systemd/system")
    for stub in ("usr/bin/sockdiag-exporter", "bin/sh"):
        (tmp_path / stub).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / stub).write_text("#!/bin/sh\n")
        (tmp_path / stub).chmod(0o755)
    (tmp_path / "man/man1").mkdir(parents=True)  # verify opens each man: Documentation= page; the shipped one
    shutil.copy(os.path.join(ROOT, "packaging", "sockdiag-exporter.1"), tmp_path / "man/man1")
    result = subprocess.run(["systemd-analyze", "verify", f"--root={tmp_path}", "sockdiag-exporter.service",
                             "sockdiag-exporter.socket"], capture_output=True, text=True,
                            env=dict(os.environ, MANPATH=str(tmp_path / "man")))
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def exposure(unit_dir) -> float:
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                             os.path.join(unit_dir, "sockdiag-exporter.service")], capture_output=True, text=True)
    return float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout).group(1))


def test_exposure_is_the_one_readme_states(tmp_path):
    """The unit alone, and with the namespaces drop-in (systemd-analyze reads drop-ins beside the unit)."""
    shutil.copy(SERVICE, tmp_path)
    alone, with_namespaces = exposure(tmp_path), exposure(UNITS)
    assert alone <= 1.1 and alone < with_namespaces
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert f"exposure level {alone}" in readme and f"exposure level {with_namespaces}" in readme
