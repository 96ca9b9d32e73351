"""Issue 12, item 6, as a property: mutate valid configs (wrong types, huge and negative
numbers, unicode, nested structures, absurd durations, known-bad URLs and networks) and
require exactly one of two outcomes. Either `parse` raises ConfigError and every issue names
a key path (no other exception escapes), or the config is accepted and everything `run`
builds from it at start builds: durations as timedeltas from now, the listen addresses, the
service's settings with env: values resolved and its SSRF guard, the redis URL through
redis-py's own parser (no connection), rule conditions and summaries, Grafana and Telegram
URLs, and the data directory.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import math
import os
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.expr import parse as parse_condition
from alerts.template import check as check_template
from monitor.config import Config, ConfigError, parse
from monitor.service_setup import resolved, sink_socket
from probes.base import DURATION
from service.delivery.ssrf import Guard

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
RICH = tomllib.loads("""
[monitor]
listen = "[::1]:9300"
data_dir = "data"
default_interval = "1m"
api_keys = ["k1"]

[service]
listen = "0.0.0.0:8080"
queue = "redis://user:pw@127.0.0.1:6379/2"
allowed_networks = ["10.0.0.0/8", "fd00::/8", "192.168.1.7"]
retry_schedule = ["1s", "1m", "1h"]
disable_after = "5d"
api_keys = ["env:SERVICE_KEY"]

[service.chains.eth]
rpc_url = "env:ETH_RPC"
confirmations = 3
poll_interval = "2s"
start_block = 100

[[targets]]
name = "eth"
type = "ethereum"
url = "env:ETH_URL"
interval = "30s"
timeout = "10s"
chain_id = 1
reference = "https://rpc.example/"

[[targets]]
name = "x"
type = "xrpl"
url = "https://xrpl.example"
max_load_factor = 50.5

[[alerts.receivers]]
name = "oncall"
chat_id = "-100123"
bot_token = "env:TG_TOKEN"
api_url = "https://api.telegram.org"

[[alerts.rules]]
name = "Lagging"
match = { chain = "ethereum" }
condition = "(block_lag > 20 or head_age_seconds > 120) and not syncing"
for = "2m"
severity = "critical"
summary = "{target} is {block_lag} blocks behind"

[alerts.route]
receiver = "oncall"
group_wait = "10s"
routes = [{ receiver = "oncall", match = { severity = "critical" }, repeat_interval = "1h" }]

[[alerts.maintenance]]
name = "weekly"
start = "02:00"
duration = "2h"
every = ["sunday"]
timezone = "Europe/Berlin"

[grafana]
url = "https://grafana.example:3000/sub"
prometheus_url = "http://127.0.0.1:9090"

[gcp]
project_id = "p"
interval = "1m"
""")
BASES = [SHIPPED, RICH, {}]

# Values chosen to hit the checks issue 12 found missing, and the edges of each type.
NASTY = st.sampled_from([
    "", " ", "0s", "-5s", "99999999999d", "1" + "0" * 400 + "d", "3650d", "3651d", "500ms",
    "redis://:::::/x", "redis://h:99999/0", "redis://h/x", "redis://h/0?colour=red",
    "redis://[::1", "rediss://h:6380/15", "10.0.0.1/8", "10.0.0.0/33", "::1/128", "ftp://x",
    "http://", "http://[::1", "https://h:99999/", "sqlite", "env:", "env:1X", "env:OK",
    "host:0", "host:65536", "[::1]:80", "example.com:9300", ":9300", "\x00", "\udc80",
    "é" * 3, "\u202e", "x" * 5000, "(" * 5000 + "peers < 1" + ")" * 5000,
    "not " * 500 + "syncing", "{target", "{{}}", "02:00", "25:00", "2026-12-01T02:00",
    "Mars/Olympus", "telegram", "critical", ".", "/", "config.toml", "config.toml/data",
])
SCALARS = st.one_of(
    NASTY,
    st.text(max_size=20),
    st.integers(),
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
NESTED = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)
VALUES = st.one_of(NASTY, NASTY, SCALARS, NESTED)  # the known-bad values most often
DURATIONS = ["0s", "1ms", "99999999999d", "1" + "0" * 30 + "d", "3650d", "3651d", "1.5h", "5"]
URLS = ["ftp://x", "http://", "http://[::1", "https://h:99999/", "http://h/ x", "https://h/",
        "env:URL", "tcp://h:1", "http://\udc80/"]
# Values aimed at a key by its name (a list's items by the list's name): the near misses an
# operator writes, so a few hundred examples reach every check rather than a type error.
AIMED: Mapping[str, list[Any]] = {
    "queue": ["redis://:::::/x", "redis://h:99999/0", "redis://h/x", "redis://h/0?colour=red",
              "redis://[::1", "rediss://h:6380/15", "redis://h/0?socket_timeout=x",
              "unix:///tmp/s", "redis://", "sqlite"],
    "allowed_networks": ["10.0.0.1/8", "10.0.0.0/33", "::1/128", "fd00::1/8", "x", "1.2.3.4"],
    "listen": ["example.com:9300", "[::1]:80", "[::1:80", "0.0.0.0:0", "h:65536", ":1",
               "localhost:9300", "999.1.1.1:80"],
    "data_dir": ["config.toml", "config.toml/data", ".", "\x00", "x" * 300, "a/b/c",
                 "/proc/nope"],
    "condition": ["(" * 5000 + "peers < 1" + ")" * 5000, "not " * 3000 + "syncing",
                  "(" * 50 + "peers < 1" + ")" * 50, "peers <", "peers < 1e999", ""],
    "summary": ["{target", "{{}}", "{nope}", "}" * 3],
    "url": URLS, "prometheus_url": URLS, "api_url": URLS, "reference": URLS, "rpc_url": URLS,
    "start": ["25:00", "2026-12-01T02:00", "9999-12-31T23:59", "0001-01-01T00:00"],
    "timezone": ["Mars/Olympus", "UTC", "../etc/passwd", ""],
    **dict.fromkeys(["interval", "timeout", "default_interval", "default_timeout",
                     "retry_schedule", "request_timeout", "disable_after", "poll_interval",
                     "for", "group_wait", "group_interval", "repeat_interval", "duration",
                     "max_head_age", "max_delivery"], DURATIONS),
}


def paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a config tree a value sits (tables and lists too)."""
    yield at
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*at, i))


def lookup(raw: Any, where: tuple[Any, ...]) -> Any:
    for key in where:
        raw = raw[key]
    return raw


def mutate(raw: dict[str, Any], where: tuple[Any, ...], how: str, value: Any) -> None:
    if not where:
        raw[str(value)[:10] if how == "add" else "monitor"] = value
        return
    *parent_path, last = where
    parent: Any = raw
    for key in parent_path:
        parent = parent[key]
    if how == "delete":
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent[f"{last}_extra"] = value
    else:
        parent[last] = value


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        every = list(paths(raw))
        leaves = [p for p in every if not isinstance(lookup(raw, p), dict | list)]
        pick_leaf: bool = draw(st.booleans())
        where = draw(st.sampled_from(leaves if leaves and pick_leaf else every))
        how = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        if how == "delete" and not where:
            continue
        names = [k for k in where if isinstance(k, str)]
        aimed = AIMED.get(names[-1]) if names else None
        value = draw(st.sampled_from(aimed)) if aimed and draw(st.booleans()) else draw(VALUES)
        mutate(raw, where, how, value)
    return raw


def durations(obj: Any) -> Iterator[float]:
    """Every duration in a decoded config section, however deep."""
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get(DURATION):
            yield from value if isinstance(value, tuple) else [value]
        elif isinstance(value, tuple):
            for item in value:
                yield from durations(item)
        elif isinstance(value, Mapping):
            for item in value.values():
                yield from durations(item)
        else:
            yield from durations(value)


class AnyEnv(dict[str, str]):
    """An environment in which every env: variable is set."""

    def __missing__(self, key: str) -> str:
        return "http://127.0.0.1:1"

    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: str, default: Any = None) -> str:
        return self[key]


def assert_startable(cfg: Config) -> None:
    """What `run` builds from the config before anything is dialled."""
    now = datetime.now(UTC)
    sections = [cfg.monitor, cfg.service, cfg.alerts, cfg.grafana, cfg.gcp,
                *cfg.targets, *(t.options for t in cfg.targets)]
    seconds = [s for section in sections for s in durations(section)]
    seconds += [x for t in cfg.targets for x in (t.interval, t.timeout)]
    for s in seconds:
        assert math.isfinite(s) and s >= 0, s
        assert now + timedelta(seconds=s) >= now  # overflows past datetime's range
    for listen in (cfg.monitor.listen, cfg.service.listen):
        host, _, port = listen.rpartition(":")
        assert host and 0 < int(port) < 65536
    service = resolved(cfg.service, AnyEnv())
    Guard(service.allow_private_targets, service.allowed_networks,
          [(*sink_socket(cfg.monitor.listen), "/canary/x")])
    for net in service.allowed_networks:
        ipaddress.ip_network(net)
    if service.queue != "sqlite":
        from redis.asyncio import BlockingConnectionPool

        pool = BlockingConnectionPool.from_url(service.queue, max_connections=1, timeout=1)
        pool.make_connection()  # type: ignore[no-untyped-call]
    for rule in cfg.alerts.rules:
        parse_condition(rule.condition)
        assert check_template(rule.summary) == []
    for receiver in cfg.alerts.receivers:
        assert urlsplit(receiver.api_url).hostname, receiver.api_url
    if cfg.grafana is not None:
        for url in (cfg.grafana.url, cfg.grafana.prometheus_url):
            parts = urlsplit(url)
            assert parts.scheme in ("http", "https") and parts.hostname
            parts.port  # noqa: B018
    data = cfg.data_dir
    existing = data
    while not existing.exists():
        existing = existing.parent
    assert existing.is_dir() and os.access(existing, os.W_OK)


BASE_DIR = Path(tempfile.mkdtemp(prefix="config-property-"))
(BASE_DIR / "config.toml").write_text("")  # a file where a data_dir may point


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_a_mutated_config_is_refused_with_key_paths_or_starts(raw: dict[str, Any]) -> None:
    try:
        cfg = parse(raw, BASE_DIR / "config.toml")
    except ConfigError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.path, issue
            str(issue).encode("utf-8", "backslashreplace")
        return
    assert_startable(cfg)


def test_the_bases_are_valid() -> None:
    for raw in BASES:
        assert_startable(parse(raw, BASE_DIR / "config.toml"))
