"""The `[alerts]` section of config.toml: rules, receivers, the route tree, inhibition and
maintenance windows, with the checks across them (receivers named by routes must exist).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts import ConditionError
from alerts.builtin import BUILTIN_NAMES
from alerts.expr import parse as parse_condition
from alerts.template import check as check_template
from core.signing import parse_secret
from monitor.config.decode import KEY, Decoder, check_http_url, join
from probes.base import OptionError, duration, is_env_ref, secret


@dataclass(frozen=True)
class RuleConfig:
    name: str
    condition: str
    match: Mapping[str, str] = field(default_factory=dict)
    for_: float = field(default=0.0, metadata={"duration": True, KEY: "for"})
    severity: Literal["critical", "warning", "info"] = "warning"
    summary: str = ""
    runbook_url: str = ""  # shown in every notification of the rule, and exported
    dashboard_url: str = ""  # likewise; default: the matching Grafana dashboard

    def __post_init__(self) -> None:
        for key in ("runbook_url", "dashboard_url"):
            if getattr(self, key):
                check_http_url(key, getattr(self, key))
        if not self.name.isidentifier():
            raise OptionError("name", "must be a name like EthNodeLagging", self.name)
        if not self.condition.strip():
            raise OptionError("condition", "must not be empty", self.condition)
        try:
            parse_condition(self.condition)  # cached: the rule engine parses it again for free
        except ConditionError as exc:
            # the error quotes the text with a marker; a long one is shown once, shortened
            message = str(exc) if len(self.condition) <= 120 else \
                f"{exc.message} at position {exc.position}"
            raise OptionError("condition", message, self.condition) from None
        problems = check_template(self.summary)
        if problems:
            raise OptionError("summary", problems[0], self.summary)


@dataclass(frozen=True)
class ReceiverConfig:
    """A receiver: `telegram` (chat_id, bot_token, ...) or `webhook` (url, secret), which
    POSTs Alertmanager's webhook JSON; keys of the other type are refused."""

    name: str
    chat_id: str = secret("")
    type: Literal["telegram", "webhook"] = "telegram"
    bot_token: str = secret("env:TELEGRAM_BOT_TOKEN")
    message_thread_id: int = 0
    api_url: str = "https://api.telegram.org"
    command_chat_ids: tuple[str, ...] = ()
    url: str = secret("")  # webhook: where to POST (may hold a token, hence env: too)
    secret: str = secret("")  # webhook: a whsec_ secret; posts then carry signatures

    def __post_init__(self) -> None:
        check_http_url("api_url", self.api_url)
        if self.type == "webhook":
            if not self.url:
                raise OptionError("url", "is required for a receiver of type webhook",
                                  self.url)
            if not is_env_ref(self.url):
                check_http_url("url", self.url)
            if self.secret and not is_env_ref(self.secret):
                try:
                    parse_secret(self.secret)
                except ValueError as exc:  # its message never quotes the secret
                    raise OptionError("secret", str(exc), self.secret) from None
            for key in ("chat_id", "message_thread_id", "command_chat_ids"):
                if getattr(self, key):
                    raise OptionError(key, "is for receivers of type telegram, not webhook",
                                      getattr(self, key))
        else:
            for key in ("url", "secret"):
                if getattr(self, key):
                    raise OptionError(key, "is for receivers of type webhook, not telegram",
                                      getattr(self, key))


@dataclass(frozen=True)
class RouteConfig:
    receiver: str = ""
    match: Mapping[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("alertname", "target")
    group_wait: float = duration(10.0)
    group_interval: float = duration(60.0)
    repeat_interval: float = duration(4 * 3600.0)
    routes: tuple[RouteConfig, ...] = ()
    # as in Alertmanager: a matching route with continue lets its next siblings match too
    continue_: bool = field(default=False, metadata={KEY: "continue"})


@dataclass(frozen=True)
class InhibitConfig:
    source_match: Mapping[str, str] = field(default_factory=dict)
    target_match: Mapping[str, str] = field(default_factory=dict)
    equal: tuple[str, ...] = ("target",)


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class MaintenanceConfig:
    name: str
    start: str
    duration: float = duration(3600.0)
    match: Mapping[str, str] = field(default_factory=dict)
    every: tuple[str, ...] = ()
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise OptionError("timezone", 'must be an IANA time zone like "Europe/Berlin"',
                              self.timezone) from None
        if "T" in self.start:
            try:
                datetime.fromisoformat(self.start)
            except ValueError:
                raise OptionError("start", 'must be "HH:MM" or a date like "2026-12-01T02:00"',
                                  self.start) from None
            if self.every:
                raise OptionError("every", "must be empty for a one-off window (start is a "
                                  "date)", list(self.every))
        elif not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", self.start):
            raise OptionError("start", 'must be "HH:MM" or a date like "2026-12-01T02:00"',
                              self.start)
        for i, day in enumerate(self.every):
            if day not in WEEKDAYS:
                raise OptionError(f"every[{i}]", "must be a weekday like \"sunday\"", day)
        if self.duration <= 0:
            raise OptionError("duration", "must be more than 0s", self.duration)


@dataclass(frozen=True)
class AlertsSection:
    disable_builtin: tuple[str, ...] = ()
    watchdog: bool = False  # the always-firing `Watchdog` alert, for a dead man's switch
    rules: tuple[RuleConfig, ...] = ()
    receivers: tuple[ReceiverConfig, ...] = ()
    route: RouteConfig = field(default_factory=RouteConfig)
    inhibit: tuple[InhibitConfig, ...] = ()
    maintenance: tuple[MaintenanceConfig, ...] = ()
    # where the README is read: the built-in rules' runbook_url is its runbook anchor there
    runbook_base: str = "README.md"


def check_alerts(d: Decoder, alerts: AlertsSection) -> None:
    for i, name in enumerate(alerts.disable_builtin):
        if name not in BUILTIN_NAMES:
            d.error(f"alerts.disable_builtin[{i}]",
                    "is not a built-in rule (" + ", ".join(BUILTIN_NAMES) + ")", name)
    _unique(d, "alerts.rules", [r.name for r in alerts.rules])
    _unique(d, "alerts.receivers", [r.name for r in alerts.receivers])
    receivers = {r.name for r in alerts.receivers}

    def check_route(route: RouteConfig, path: str) -> None:
        if route.receiver and route.receiver not in receivers:
            d.error(join(path, "receiver"), "names no [[alerts.receivers]] entry",
                    route.receiver)
        for i, sub in enumerate(route.routes):
            check_route(sub, f"{path}.routes[{i}]")

    check_route(alerts.route, "alerts.route")


def _unique(d: Decoder, path: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            d.error(f"{path}[{i}].name", "is used twice", name)
        seen.add(name)
