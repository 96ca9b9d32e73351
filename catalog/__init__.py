"""The metric catalog: every metric Crypitor exports, defined once.

Exporters (Prometheus, Google Cloud Monitoring), dashboards and exported alert rules all
read these definitions, so a renamed metric cannot leave one of them behind.
"""

from catalog.metrics import (
    ALL,
    XRPL_HEALTHY_STATES,
    XRPL_SERVER_STATES,
    MetricDef,
    MetricKind,
    by_name,
)

__all__ = ["ALL", "XRPL_HEALTHY_STATES", "XRPL_SERVER_STATES", "MetricDef", "MetricKind",
           "by_name"]
