"""Command line: node_exporter-style flags over the YAML config; bad input is one line on stderr and exit code 2."""

import argparse
import dataclasses
import platform
import sys
from typing import List, Optional

from . import __version__, webconfig
from .collectors import REGISTRY
from .config import DEFAULT_PORT, LOG_FORMATS, LOG_LEVELS, Config, ConfigError, from_dict, load

PROG = "sockdiag-exporter"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage plus error
        raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        usage=f"{PROG} [options]\n       {PROG} summary [--json] [--namespaces | --netns NAME] [options]",
        description="Prometheus exporter for every socket on this host, read through the kernel's sock_diag. "
                    "With `summary`: one collection, printed for a terminal (or as JSON), then exit.",
        allow_abbrev=False,
    )
    p.add_argument("command", nargs="?", choices=("summary",), metavar="summary",
                   help="print the exporter's health and this host's socket tables from one collection and exit")
    p.add_argument("--web.listen-address", dest="listen_address", metavar="ADDR",
                   help=f"address to listen on: host:port, [ipv6]:port or :port (default :{DEFAULT_PORT})")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", metavar="PATH",
                   help="path under which to expose metrics (default /metrics)")
    p.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                   help="exporter-toolkit web configuration (TLS, basic auth, headers, rate limit)")
    p.add_argument("--config.file", dest="config_file", metavar="FILE", help="YAML configuration file")
    p.add_argument("--config.check", dest="config_check", action="store_true",
                   help="validate the configuration and flags (the listen address must parse and resolve; a port "
                        "in use is only found when the exporter starts, which then exits 1), print the enabled "
                        "collectors and exit: 0 if valid, 2 if not")
    p.add_argument("--log.level", dest="log_level", choices=LOG_LEVELS, help="minimum level logged (default info)")
    p.add_argument("--log.format", dest="log_format", choices=LOG_FORMATS, help="log line format (default logfmt)")
    p.add_argument("--collector.disable-defaults", dest="disable_defaults", action="store_true",
                   help="start with every collector disabled; enable some with --collector.<name>")
    group = p.add_argument_group("collectors (all enabled by default; --no-collector.<name> disables one)")
    for name, col in REGISTRY.items():
        group.add_argument(f"--collector.{name}", dest=f"collector_{name}", action=argparse.BooleanOptionalAction,
                           help=f"enable or disable the {name} collector: {col.help}")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    summary = p.add_argument_group("summary")
    summary.add_argument("--json", action="store_true", help="print the summary as JSON, for scripts")
    summary.add_argument("--namespaces", action="store_true",
                         help="add one line per network namespace (needs namespaces.named or namespaces.processes)")
    summary.add_argument("--netns", metavar="NAME",
                         help="the tables of one network namespace, by its netns label (needs namespaces "
                              "configured)")
    return p


def _apply_flag(config: Config, flag: str, section: str, key: str, value) -> Config:
    try:
        return from_dict({section: {key: value}}, config)
    except ConfigError as e:
        raise ConfigError(f"{flag}: {str(e).split(': ', 1)[1]}") from None


def resolve(args: argparse.Namespace) -> Config:
    """Config file (if any) with the flags given on top of it."""
    config = load(args.config_file) if args.config_file else Config()
    for flag, section, key, value in (
        ("--web.listen-address", "web", "listen_address", args.listen_address),
        ("--web.telemetry-path", "web", "telemetry_path", args.telemetry_path),
        ("--web.config.file", "web", "config_file", args.web_config_file),
        ("--log.level", "log", "level", args.log_level),
        ("--log.format", "log", "format", args.log_format),
    ):
        if value is not None:
            config = _apply_flag(config, flag, section, key, value)
    collectors = dict(config.collectors)
    if args.disable_defaults:
        collectors = dict.fromkeys(collectors, False)
    for name in REGISTRY:
        value = getattr(args, f"collector_{name}")
        if value is not None:
            collectors[name] = value
    return dataclasses.replace(config, collectors=collectors)


def resolve_all(args: argparse.Namespace):
    """The configuration and the web security it points to, both validated."""
    config = resolve(args)
    return config, webconfig.load(config.web.config_file)


def _check_listen_address(listen_address: str) -> None:
    """What binding needs but the port: an address that resolves (999.1.1.1 parses, and fails only then)."""
    from .web import resolve_listen_address

    try:
        resolve_listen_address(listen_address)
    except OSError as e:
        raise ConfigError(f"web.listen_address: {listen_address!r} does not resolve: {e.strerror or e}") from None


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.version:
            print(f"{PROG} {__version__} (Python {platform.python_version()})")
            return 0
        config, security = resolve_all(args)
        if args.command != "summary" and (args.json or args.namespaces or args.netns is not None):
            raise ConfigError("--json, --namespaces and --netns go with the summary command")
        if args.command == "summary" and (args.namespaces or args.netns is not None) and \
                not config.namespaces.enabled:
            raise ConfigError("--namespaces and --netns need namespaces.named or namespaces.processes "
                              "in the configuration")
        if args.config_check:
            _check_listen_address(config.web.listen_address)
    except ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if args.config_check:
        enabled = ", ".join(name for name, on in config.collectors.items() if on) or "none"
        print(f"{PROG}: configuration is valid; collectors enabled: {enabled}")
        return 0
    if args.command == "summary":
        from .summary import run_summary

        return run_summary(config, args.config_file or "", args.json, args.namespaces, args.netns)
    from .service import Service  # the daemon's imports are not needed to check a config

    return Service(config, lambda: resolve_all(args), security, args.config_file or "").run()
