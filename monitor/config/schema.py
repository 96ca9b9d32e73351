"""config.toml as typed, frozen objects: the schema of every section, loaded and checked once.

`load(path)` returns a `Config` or raises `ConfigError` listing every problem with its key
path and the bad value. `env:` values stay unresolved here; `monitor.config.envrefs` resolves them
when the feature that needs them starts.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chains.jsonrpc import DEFAULT_MAX_RESPONSE_BYTES
from monitor.config.alertconfig import AlertsSection, check_alerts
from monitor.config.decode import Decoder, Issue, check_http_url, join, show
from monitor.config.slos import SloConfig, decode_slos
from monitor.config.targets import TargetConfig, decode_targets, is_location
from probes.base import OptionError, duration, is_env_ref, secret
from service.store import parse_sentinel_url, redacted


class ConfigError(Exception):
    """The config cannot be used; `issues` lists every reason."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("\n".join(map(str, issues)))
        self.issues = issues


def _listen(key: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionError(key, 'must be "host:port"', value)


def _network(key: str, value: str) -> None:
    """A network as the service's SSRF guard reads it (strictly): host bits set
    ("10.0.0.1/8") are refused rather than widened, since the operator may have meant the
    host alone."""
    try:
        ipaddress.ip_network(value)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise OptionError(key, 'must be a CIDR like "10.0.0.0/8"', value) from None
        raise OptionError(key, f'has host bits set; write "{loose}" for the network',
                          value) from None


def redis_url_problem(url: str) -> str:
    """Why redis-py would refuse `url` when the service builds its pool ("" when it would
    not), found without connecting: the same parser, and a connection object built."""
    from redis.asyncio import BlockingConnectionPool
    from redis.exceptions import RedisError

    try:
        pool = BlockingConnectionPool.from_url(url, max_connections=1, timeout=1.0)
        pool.make_connection()  # type: ignore[no-untyped-call]
        path = urlsplit(url).path.strip("/")
    except (ValueError, TypeError, RedisError) as exc:
        return str(exc)
    if path and not (path.isdigit() and int(path) < 2**31):  # redis-py ignores it silently
        return "the path must be a database number like /0"
    return ""


@dataclass(frozen=True)
class MonitorSection:
    listen: str = "127.0.0.1:9300"
    data_dir: str = "data"
    default_interval: float = duration(30.0)
    default_timeout: float = duration(10.0)
    api_keys: tuple[str, ...] = field(default=(), metadata={"secret": True})
    log_format: str = "text"  # text | json (Google Cloud Logging); --log-format overrides

    def __post_init__(self) -> None:
        _listen("listen", self.listen)
        if self.log_format not in ("text", "json"):
            raise OptionError("log_format", 'must be "text" or "json"', self.log_format)
        host = self.listen.rpartition(":")[0].strip("[]")
        if host != "localhost":
            try:
                ipaddress.ip_address(host)
            except ValueError:
                # the webhook service and the canary reach the monitor at this address, as
                # an address (the SSRF guard lets exactly that one through)
                raise OptionError("listen", 'must be an IP address or "localhost" with a '
                                  'port, like "0.0.0.0:9300"', self.listen) from None
        if self.default_interval <= 0:
            raise OptionError("default_interval", "must be more than 0s", "0s")
        if self.default_timeout <= 0:
            raise OptionError("default_timeout", "must be more than 0s", "0s")


# a chain's max_response_bytes: below 64 KiB not even an empty block's batch fits; above 1 GiB
# the limit no longer protects the process that also serves the API and delivers webhooks
MIN_RESPONSE_LIMIT = 64 * 1024
MAX_RESPONSE_LIMIT = 1024 * 1024 * 1024


@dataclass(frozen=True)
class ChainFollowConfig:
    rpc_url: str = secret("http://127.0.0.1:8545")
    confirmations: int = 12
    poll_interval: float = duration(2.0)
    chain_id: int | None = None
    start_block: int | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        if not MIN_RESPONSE_LIMIT <= self.max_response_bytes <= MAX_RESPONSE_LIMIT:
            raise OptionError("max_response_bytes",
                              f"must be from {MIN_RESPONSE_LIMIT} to {MAX_RESPONSE_LIMIT}",
                              self.max_response_bytes)
        if self.confirmations < 0:
            raise OptionError("confirmations", "must be 0 or more", self.confirmations)
        if self.poll_interval <= 0:
            raise OptionError("poll_interval", "must be more than 0s", "0s")
        if self.start_block is not None and self.start_block < 0:
            raise OptionError("start_block", "must be 0 or more", self.start_block)


@dataclass(frozen=True)
class ServiceSection:
    enabled: bool = True
    listen: str = "127.0.0.1:8080"
    queue: str = "sqlite"
    api_keys: tuple[str, ...] = field(default=(), metadata={"secret": True})
    allow_private_targets: bool = False
    allowed_networks: tuple[str, ...] = ()
    retry_schedule: tuple[float, ...] = field(
        default=(5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
        metadata={"duration": True})
    request_timeout: float = duration(15.0)
    max_in_flight_per_endpoint: int = 10
    disable_after: float = duration(5 * 86400.0)
    shutdown_drain: float = duration(5.0)
    shutdown_timeout: float = duration(30.0)
    chains: Mapping[str, ChainFollowConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _listen("listen", self.listen)
        if self.queue.startswith("redis+sentinel://"):
            try:
                parse_sentinel_url(self.queue)
            except ValueError as exc:  # the message and the value shown never hold the password
                raise OptionError("queue", f"is not a usable redis+sentinel:// URL: {exc}",
                                  redacted(self.queue)) from None
        elif self.queue != "sqlite" and not self.queue.startswith(("redis://", "rediss://")):
            raise OptionError("queue", 'must be "sqlite", a redis:// or a redis+sentinel:// URL',
                              self.queue)
        elif self.queue != "sqlite":
            problem = redis_url_problem(self.queue)
            if problem:
                raise OptionError("queue", f"is not a usable redis:// URL: {problem}",
                                  self.queue)
        for i, net in enumerate(self.allowed_networks):
            _network(f"allowed_networks[{i}]", net)
        if not 0 < self.request_timeout <= 300:
            raise OptionError("request_timeout", "must be between 0s and 5m",
                              self.request_timeout)
        if self.max_in_flight_per_endpoint < 1:
            raise OptionError("max_in_flight_per_endpoint", "must be 1 or more",
                              self.max_in_flight_per_endpoint)
        # a drain longer than an orchestrator's grace period ends in a SIGKILL
        if not 0 <= self.shutdown_drain <= 600:
            raise OptionError("shutdown_drain", "must be between 0s and 10m",
                              self.shutdown_drain)
        if not 0 <= self.shutdown_timeout <= 3600:
            raise OptionError("shutdown_timeout", "must be between 0s and 1h",
                              self.shutdown_timeout)


@dataclass(frozen=True)
class GrafanaSection:
    url: str = "http://127.0.0.1:3000"
    token: str = secret("env:GRAFANA_TOKEN")
    folder: str = "Crypitor"
    prometheus_url: str = "http://127.0.0.1:9090"

    def __post_init__(self) -> None:
        check_http_url("url", self.url)
        check_http_url("prometheus_url", self.prometheus_url)


@dataclass(frozen=True)
class GcpSection:
    project_id: str = secret("")
    interval: float = duration(60.0)
    api_endpoint: str = ""
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.interval < 10:
            # Cloud Monitoring accepts one point per series every 5 s at most; 10 s keeps
            # clear of it even with retries.
            raise OptionError("interval", "must be at least 10s", self.interval)


@dataclass(frozen=True)
class ClusterSection:
    """`[cluster]`: several `crypitor run` instances sharing one Redis. Needs a restart to
    change (see monitor.reload)."""

    redis: str = secret("redis://127.0.0.1:6379/1")
    location: str = "default"
    instance: str = ""  # "": host name and process id, chosen at start
    quorum: int = 1
    lease: float = duration(10.0)

    def __post_init__(self) -> None:
        if not is_env_ref(self.redis):
            if self.redis.startswith("redis+sentinel://"):
                try:
                    parse_sentinel_url(self.redis)
                except ValueError as exc:  # neither message nor value hold the password
                    raise OptionError("redis", f"is not a usable redis+sentinel:// URL: {exc}",
                                      redacted(self.redis)) from None
                return self._check_rest()
            if not self.redis.startswith(("redis://", "rediss://")):
                raise OptionError("redis", "must be a redis://, rediss:// or redis+sentinel:// "
                                  "URL", self.redis)
            problem = redis_url_problem(self.redis)
            if problem:
                raise OptionError("redis", f"is not a usable redis:// URL: {problem}",
                                  self.redis)
        self._check_rest()

    def _check_rest(self) -> None:
        if not is_location(self.location):
            raise OptionError("location", "must be a non-empty name without control "
                              "characters", self.location)
        if self.instance and not is_location(self.instance):
            raise OptionError("instance", "must be empty (host name and process id) or a "
                              "name without control characters", self.instance)
        if self.quorum < 1:
            raise OptionError("quorum", "must be 1 or more", self.quorum)
        if self.lease < 1:
            raise OptionError("lease", "must be at least 1s", self.lease)


@dataclass(frozen=True)
class StatusPageSection:
    """`[status_page]`: the page at `/`, `/api/v1/status`, the badges and the feed. Applies on
    reload, except `listen` (a second listener serving only those), which needs a restart."""

    title: str = "Crypitor status"
    public: bool = False  # no URLs, addresses or failure details anywhere it shows
    group_by: str = "team"  # the target label that groups the page ("" = one group)
    listen: str = ""

    def __post_init__(self) -> None:
        if not self.title.strip() or len(self.title) > 100 or not self.title.isprintable():
            raise OptionError("title", "must be 1 to 100 printable characters", self.title)
        if len(self.group_by) > 100 or not self.group_by.isprintable():
            raise OptionError("group_by", "must be a label name or empty", self.group_by)
        if self.listen:
            _listen("listen", self.listen)


@dataclass(frozen=True)
class Config:
    path: Path
    monitor: MonitorSection
    service: ServiceSection
    targets: tuple[TargetConfig, ...]
    alerts: AlertsSection
    grafana: GrafanaSection | None
    gcp: GcpSection | None
    cluster: ClusterSection | None = None
    slos: tuple[SloConfig, ...] = ()
    status_page: StatusPageSection = field(default_factory=StatusPageSection)

    @property
    def data_dir(self) -> Path:
        return (self.path.parent / self.monitor.data_dir).resolve()

    def target(self, name: str) -> TargetConfig | None:
        return next((t for t in self.targets if t.name == name), None)


def _check_data_dir(d: Decoder, base: Path, value: str) -> None:
    """`run` creates data_dir and writes its files there: it must be a directory we can write
    to, or be creatable below the nearest directory that exists."""
    try:
        where = (base / value).resolve()
        existing = where
        while not existing.exists():
            existing = existing.parent
        if existing == where and not where.is_dir():
            d.error("monitor.data_dir", "names a file, not a directory", value)
        elif not existing.is_dir():
            d.error("monitor.data_dir", f"cannot be created: {existing} is a file", value)
        elif not os.access(existing, os.W_OK | os.X_OK):
            verb = "is not writable" if existing == where else \
                f"cannot be created: {existing} is not writable"
            d.error("monitor.data_dir", verb, value)
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long, a loop of links
        d.error("monitor.data_dir", f"is not a usable path ({exc})", value)


SECTIONS = ("monitor", "service", "targets", "alerts", "grafana", "gcp", "cluster", "slos",
            "status_page")


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([Issue("", f"{path}: no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Issue("", f"{path}: cannot read: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Issue("", f"{path}: not valid TOML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([Issue("", f"{path}: nested too deeply")]) from None
    return parse(raw, path)


def parse(raw: Mapping[str, Any], path: Path) -> Config:
    d = Decoder()
    for key in raw:
        if key not in SECTIONS:
            d.error(join("", key), "unknown section (allowed: " + ", ".join(SECTIONS) + ")")
    monitor = d.table(MonitorSection, raw.get("monitor", {}), "monitor")
    service = d.table(ServiceSection, raw.get("service", {}), "service")
    alerts = d.table(AlertsSection, raw.get("alerts", {}), "alerts")
    grafana = d.table(GrafanaSection, raw["grafana"], "grafana") if "grafana" in raw else None
    gcp = d.table(GcpSection, raw["gcp"], "gcp") if "gcp" in raw else None
    cluster = d.table(ClusterSection, raw["cluster"], "cluster") if "cluster" in raw else None
    status_page = d.table(StatusPageSection, raw.get("status_page", {}), "status_page")
    defaults = monitor or MonitorSection()
    targets = decode_targets(d, raw.get("targets", []), defaults.default_interval,
                             defaults.default_timeout)
    if alerts is not None:
        check_alerts(d, alerts)
    slos = decode_slos(d, raw.get("slos", []))
    if monitor is not None:
        _check_data_dir(d, path.parent, monitor.data_dir)
    _check_cluster(d, raw, cluster, service, targets)
    if (d.issues or monitor is None or service is None or alerts is None
            or status_page is None):
        raise ConfigError(d.issues)
    if monitor.listen == service.listen and service.enabled:
        raise ConfigError([Issue("service.listen", "must differ from monitor.listen "
                                 f"(got {show(service.listen)})")])
    if status_page.listen and status_page.listen in (
            monitor.listen, service.listen if service.enabled else ""):
        raise ConfigError([Issue("status_page.listen", "must differ from monitor.listen and "
                                 f"service.listen (got {show(status_page.listen)})")])
    return Config(path, monitor, service, targets, alerts,
                  grafana if "grafana" in raw else None, gcp if "gcp" in raw else None,
                  cluster, slos=slos, status_page=status_page)


def _check_cluster(d: Decoder, raw: Mapping[str, Any], cluster: ClusterSection | None,
                   service: ServiceSection | None,
                   targets: tuple[TargetConfig, ...]) -> None:
    """The checks between `[cluster]`, `[service]` and the targets' `locations`."""
    index: dict[str, int] = {}
    raw_targets = raw.get("targets", [])
    for i, item in enumerate(raw_targets if isinstance(raw_targets, list) else []):
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            index.setdefault(item["name"], i)  # the first of a name is the one decoded
    if "cluster" not in raw:
        # locations mean nothing to a single instance: an error rather than silently
        # probing from the one place there is
        for t in targets:
            if t.locations:
                d.error(f"targets[{index[t.name]}].locations",
                        f"target {show(t.name)}: needs a [cluster] section", list(t.locations))
        return
    if cluster is None:
        return  # its own errors are recorded
    if service is not None and service.enabled and service.queue == "sqlite":
        # every instance would deliver from its own SQLite queue: events accepted by one
        # would be unknown to the others
        d.error("service.queue", "must be a redis:// or redis+sentinel:// URL with [cluster] "
                "(or set service.enabled = false)", service.queue)
    for t in targets:
        if t.locations and len(t.locations) < cluster.quorum:
            d.error(f"targets[{index[t.name]}].locations",
                    f"target {show(t.name)}: {len(t.locations)} location(s), fewer than "
                    f"cluster.quorum ({cluster.quorum}): its alerts could never fire",
                    list(t.locations))
