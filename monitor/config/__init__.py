"""config.toml as typed, frozen objects: the schema of each section (`schema`, `targets`,
`alertconfig`), the decoder that checks it once with key paths (`decode`), durations, and the
`env:` references resolved when a feature starts (`envrefs`).
"""

from monitor.config.alertconfig import (
    AlertsSection,
    InhibitConfig,
    MaintenanceConfig,
    ReceiverConfig,
    RouteConfig,
    RuleConfig,
)
from monitor.config.decode import Issue
from monitor.config.durations import format_duration, parse_duration
from monitor.config.envrefs import SecretError, resolve, resolve_fields
from monitor.config.schema import (
    ChainFollowConfig,
    ClusterSection,
    Config,
    ConfigError,
    GcpSection,
    GrafanaSection,
    MonitorSection,
    ServiceSection,
    StatusPageSection,
    load,
    parse,
)
from monitor.config.slos import SloConfig
from monitor.config.targets import TargetConfig

__all__ = [
    "AlertsSection",
    "ChainFollowConfig",
    "ClusterSection",
    "Config",
    "ConfigError",
    "GcpSection",
    "GrafanaSection",
    "InhibitConfig",
    "Issue",
    "MaintenanceConfig",
    "MonitorSection",
    "ReceiverConfig",
    "RouteConfig",
    "RuleConfig",
    "SecretError",
    "ServiceSection",
    "SloConfig",
    "StatusPageSection",
    "TargetConfig",
    "format_duration",
    "load",
    "parse",
    "parse_duration",
    "resolve",
    "resolve_fields",
]
