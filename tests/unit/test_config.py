"""Configuration and flags: valid input is accepted, each kind of bad input is one line on stderr and exit 2."""

import dataclasses
import os
import re
import subprocess
import sys
import typing

import pytest
import yaml

from sockdiag_exporter.collectors import REGISTRY
from sockdiag_exporter.config import Config, ConfigError, PortGroup, from_dict, load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "deploy", "config.example.yml")


def run(*args, stdin=subprocess.DEVNULL):
    return subprocess.run([sys.executable, "-m", "sockdiag_exporter", *args], capture_output=True, text=True,
                          stdin=stdin, timeout=30)


def test_example_config_is_valid_and_equals_the_defaults():
    assert load(EXAMPLE) == Config()
    result = run("--config.file", EXAMPLE, "--config.check")
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout


def test_example_config_shows_every_key():
    """Every key of every configuration section is in the example, so that it documents them all."""
    with open(EXAMPLE) as f:
        text = f.read()
    example = yaml.safe_load(text)
    missing = []
    for name, kind in typing.get_type_hints(Config).items():
        if name not in example:
            missing.append(name)
        elif dataclasses.is_dataclass(kind):
            missing += [f"{name}.{f.name}" for f in dataclasses.fields(kind) if f.name not in example[name]]
    missing += [f"collectors.{name}" for name in REGISTRY if name not in example["collectors"]]
    # Port groups have no defaults: a commented example shows them, and must be valid and show every key.
    block = re.search(r"^#   port_groups:\n(?:#     .*\n)+", text, re.M).group(0)
    groups = yaml.safe_load("".join(line[4:] + "\n" for line in block.splitlines()))["port_groups"]
    assert from_dict({"port_groups": groups}).port_groups
    missing += [f"port_groups.<name>.{f.name}" for f in dataclasses.fields(PortGroup)
                if not any(f.name in group for group in groups.values())]
    assert missing == []


def test_empty_paths_mean_none_or_found(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("web: {config_file: ''}\ncgroups: {enabled: true, mount: ''}\n")
    result = run("--config.file", str(path), "--config.check")
    assert result.returncode == 0, result.stderr
    assert load(str(path)).cgroups.mount == "" and load(str(path)).web.config_file == ""


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("collectors: {tcp: false, udp: false}\nweb: {listen_address: '127.0.0.1:1234'}\n")
    result = run("--config.file", str(path), "--collector.tcp", "--no-collector.unix", "--config.check")
    assert result.returncode == 0, result.stderr
    enabled = result.stdout.split("collectors enabled: ")[1].strip().split(", ")
    assert "tcp" in enabled and "udp" not in enabled and "unix" not in enabled and "netlink" in enabled
    result = run("--collector.disable-defaults", "--collector.unix", "--config.check")
    assert result.stdout.strip().endswith("collectors enabled: unix")


BAD_CONFIGS = [
    ("bogus: 1\n", "bogus: unknown key"),
    ("web: {listen: ':1'}\n", "web.listen: unknown key (known: listen_address, telemetry_path, config_file"),
    ("web: {listen_address: 9100}\n", "web.listen_address: expected a string, got int 9100"),
    ("web: {listen_address: ':70000'}\n", "web.listen_address: ':70000': port 70000 is out of range"),
    ("web: {listen_address: 'localhost'}\n", "web.listen_address: 'localhost': expected host:port"),
    ("web: {telemetry_path: 'metrics'}\n", "web.telemetry_path: 'metrics': expected an absolute path"),
    ("web: {telemetry_path: '/'}\n", "web.telemetry_path: '/': expected an absolute path other than /"),
    ("log: {level: loud}\n", "log.level: 'loud': expected one of debug, info, warn, error"),
    ("netlink: {dump_retries: -1}\n", "netlink.dump_retries: -1: expected a value from 0 to 100"),
    ("netlink: {timeout_seconds: fast}\n", "netlink.timeout_seconds: expected a number, got str 'fast'"),
    ("netlink: {receive_buffer_bytes: 1.5}\n", "netlink.receive_buffer_bytes: expected an integer, got float"),
    ("netlink: {dump_retries: true}\n", "netlink.dump_retries: expected an integer, got bool True"),
    ("netlink: {timeout_seconds: .nan}\n", "netlink.timeout_seconds: expected a number"),
    ("collectors: {tcpp: true}\n", "collectors.tcpp: unknown key (known: tcp, udp"),
    ("collectors: {tcp: 'yes'}\n", "collectors.tcp: expected true or false, got str 'yes'"),
    ("collectors: [tcp]\n", "collectors: expected a mapping, got a list"),
    ("web: 3\n", "web: expected a mapping, got int 3"),
    ("- a\n- b\n", "config: expected a mapping, got a list"),
    ("web: {listen_address: ':1'\n", "invalid YAML: line 2, column 1"),
    ("web:\n  telemetry_path: /a\n  telemetry_path: /b\n", "line 3: key 'telemetry_path' appears twice"),
    ("web: !!python/object:os.system {}\n", "invalid YAML"),
    ("cgroups: {mount: ' '}\n", "cgroups.mount: ' ': expected a path, or empty for none"),
    ("udp_receivers: {max_series: -1}\n", "udp_receivers.max_series: -1: expected a value from 0 to 100000"),
    ("listeners: {max_series: -5}\n", "listeners.max_series: -5: expected a value from 0 to 100000"),
    ("ephemeral_ports: {destinations: 5000}\n", "ephemeral_ports.destinations: 5000: expected a value from 0 to 1000"),
    ("ephemeral_ports: {interval_seconds: -1}\n", "ephemeral_ports.interval_seconds: -1.0: expected a value from 0"),
    ("ephemeral_ports: {top: 3}\n", "ephemeral_ports.top: unknown key (known: destinations, interval_seconds)"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS, ids=[m.split(":")[0] for _, m in BAD_CONFIGS])
def test_bad_config_is_one_line_and_exit_2(tmp_path, text, message):
    path = tmp_path / "config.yml"
    path.write_text(text)
    result = run("--config.file", str(path), "--config.check")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sockdiag-exporter: error: {path}: ")
    assert message in lines[0]


def test_unreadable_files_are_one_line(tmp_path):
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path, message in ((tmp_path / "missing.yml", "cannot read: No such file or directory"),
                          (binary, "not UTF-8 text"), (tmp_path, "cannot read")):
        result = run("--config.file", str(path), "--config.check")
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


BAD_FLAGS = [
    (["--web.listen-address", "nope"], "--web.listen-address: 'nope': expected host:port"),
    (["--web.telemetry-path", "x"], "--web.telemetry-path: 'x': expected an absolute path"),
    (["--log.level", "loud"], "argument --log.level: invalid choice: 'loud'"),
    (["--collector.nope"], "unrecognized arguments: --collector.nope"),
    (["--web.listen"], "unrecognized arguments: --web.listen"),
    (["--config.file"], "argument --config.file: expected one argument"),
]


@pytest.mark.parametrize("args,message", BAD_FLAGS, ids=[a[0] for a, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_and_exit_2(args, message):
    result = run(*args, "--config.check")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"sockdiag-exporter: error: {message}"] or (
        len(result.stderr.splitlines()) == 1 and message in result.stderr), result.stderr


def test_version_and_help():
    assert run("--version").stdout.startswith("sockdiag-exporter 0.")
    help_text = run("--help").stdout
    for flag in ("--web.listen-address", "--web.telemetry-path", "--config.file", "--config.check", "--log.level",
                 "--log.format", "--collector.disable-defaults", "--version", "summary", "--json", "--namespaces",
                 "--netns"):
        assert flag in help_text
    for name in REGISTRY:
        assert f"--collector.{name}, --no-collector.{name}" in help_text
    assert "a port in use is only found when the exporter starts, which then exits 1" in " ".join(help_text.split())


@pytest.mark.parametrize("address", [":9965", "localhost:9965", "127.0.0.1:1", "[::1]:9965", "[::]:80"])
def test_config_check_accepts_addresses_that_resolve(address):
    result = run(f"--web.listen-address={address}", "--config.check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("address", ["999.1.1.1:9000", "no-such-host.invalid:9965"])
def test_config_check_refuses_an_address_that_does_not_resolve(address):
    """It parses, and binding it would fail at start (exit 1): --config.check says so first (exit 2)."""
    result = run(f"--web.listen-address={address}", "--config.check")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"sockdiag-exporter: error: web.listen_address: '{address}' does not resolve: Name or service not known"]


@pytest.mark.parametrize("args,message", [
    (["--json"], "--json, --namespaces and --netns go with the summary command"),
    (["summary", "--netns", "x"], "--namespaces and --netns need namespaces.named or namespaces.processes in the "
                                  "configuration"),
    (["summary", "--namespaces"], "--namespaces and --netns need namespaces.named or namespaces.processes in the "
                                  "configuration"),
    (["sumary"], "argument summary: invalid choice: 'sumary' (choose from 'summary')"),
])
def test_summary_usage_errors_are_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2 and result.stderr.splitlines() == [f"sockdiag-exporter: error: {message}"]


def test_from_dict_builds_typed_objects():
    config = from_dict({"netlink": {"timeout_seconds": 2}, "collectors": {"sctp": False}})
    assert config.netlink.timeout_seconds == 2.0 and isinstance(config.netlink.timeout_seconds, float)
    assert config.collectors["sctp"] is False and config.collectors["tcp"] is True
    assert "sctp" not in [c.name for c in config.enabled_collectors()]
    with pytest.raises(ConfigError):
        from_dict({"netlink": {"receive_buffer_bytes": 1024}})
