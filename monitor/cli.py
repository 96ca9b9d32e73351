"""The `crypitor` command line (also `python -m monitor`).

Exit codes: 0 success, 1 runtime failure (for `probe`: the target is down), 2 bad config or
usage. Errors are one line each, naming the key path and the bad value; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from alerts.builtin import all_rules
from core import logs
from monitor import __version__
from monitor.config import Config, ConfigError, GrafanaSection, SecretError, load, resolve

log = logging.getLogger("crypitor")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crypitor", description="Crypitor Monitor: probes "
                                "blockchain nodes and webhook endpoints, exports Prometheus "
                                "metrics.")
    p.add_argument("--version", action="version", version=f"crypitor {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("-c", "--config", default="config.toml",
                       help="config file (default: ./config.toml)")
        return c

    for name, text in (("run", "run the monitor until SIGINT/SIGTERM"),
                       ("service", "run the webhook delivery service alone")):
        daemon = command(name, text)
        daemon.add_argument("--log-level", default="info",
                            choices=["debug", "info", "warning", "error"])
        daemon.add_argument("--log-format", choices=logs.FORMATS, default=None,
                            help="text (default) or json (Google Cloud Logging's structured "
                            "form); overrides [monitor].log_format")
    command("check-config", "validate the config and summarise it")
    probe = command("probe", "probe one configured target once and print the result as JSON")
    probe.add_argument("name", help="the target's name")
    rules = sub.add_parser("rules", help="export the alert rules",
                           description="export the alert rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    export = rules_sub.add_parser(
        "export", help="write Prometheus alerting rules equivalent to the configured rules",
        description="write Prometheus alerting rules equivalent to the configured rules")
    export.add_argument("-c", "--config", default="config.toml",
                        help="config file (default: ./config.toml)")
    export.add_argument("-o", "--out", help="the file to write (default: standard output)")
    boards = sub.add_parser("dashboards", help="export or push the Grafana dashboards",
                            description="export or push the Grafana dashboards")
    boards_sub = boards.add_subparsers(dest="dashboards_command", required=True,
                                       metavar="COMMAND")
    to_files = boards_sub.add_parser(
        "export", help="write dashboard JSON and Grafana provisioning YAML",
        description="write dashboard JSON and Grafana provisioning YAML")
    to_files.add_argument("-c", "--config", default="config.toml",
                          help="config file (default: ./config.toml)")
    to_files.add_argument("--out", required=True, help="the directory to write")
    push = boards_sub.add_parser(
        "push", help="create or update the dashboards through Grafana's HTTP API",
        description="create or update the dashboards through Grafana's HTTP API")
    push.add_argument("-c", "--config", default="config.toml",
                      help="config file (default: ./config.toml)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.issues)} error(s):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(summary(config))
        return 0
    if args.command == "probe":
        from monitor.probe_once import probe_once

        return _run_async(probe_once(config, args.name))
    if args.command == "rules":
        return export_rules(config, args.out)
    if args.command == "dashboards":
        if args.dashboards_command == "export":
            from dashboards.export import export_command

            g = config.grafana or GrafanaSection()
            return export_command(args.out, g.prometheus_url, g.folder)
        return _run_async(push_dashboards(config))
    logs.setup(args.log_level, args.log_format or config.monitor.log_format)
    from monitor.app import run
    from monitor.service_setup import run_service

    if args.command == "service":
        return _run_async(run_service(config))
    return _run_async(run(config))


async def push_dashboards(config: Config) -> int:
    """`crypitor dashboards push`: 0 pushed, 1 Grafana refused or is unreachable, 2 no
    `[grafana]` section or its token's variable is unset."""
    from dashboards.build import all_dashboards
    from dashboards.grafana import push
    from dashboards.grafana_api import GrafanaError, shown_url

    g = config.grafana
    if g is None:
        print(f"{config.path}: [grafana] is not configured", file=sys.stderr)
        return 2
    try:
        token = resolve(g.token, "grafana.token", os.environ)
    except SecretError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = await push(g.url, token, g.folder, g.prometheus_url,
                            all_dashboards(g.prometheus_url))
    except GrafanaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{shown_url(g.url)}: {report.summary()}")
    return 0


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


def summary(config: Config) -> str:
    kinds: dict[str, int] = {}
    for t in config.targets:
        kinds[t.type] = kinds.get(t.type, 0) + 1
    by_type = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    parts = [
        f"{config.path}: OK",
        f"{len(config.targets)} targets ({by_type})",
        f"monitor on {config.monitor.listen}",
        f"service {'on ' + config.service.listen if config.service.enabled else 'disabled'}",
        f"{len(all_rules(config.alerts))} alert rules ({len(config.alerts.rules)} configured),"
        f" {len(config.alerts.receivers)} receivers",
    ]
    if config.grafana:
        parts.append(f"grafana at {config.grafana.url}")
    if config.gcp:
        parts.append("gcp export on")
    return "; ".join(parts)


def export_rules(config: Config, out: str | None) -> int:
    from alerts.promrules import export
    from monitor.alerting_setup import linked_rules

    text = export(linked_rules(config.alerts, config.grafana), str(config.path), config.slos)
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        print(f"cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
