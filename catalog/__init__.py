"""The metric catalog: every metric Crypitor exports, defined once.

Exporters (Prometheus, Google Cloud Monitoring), dashboards and exported alert rules all
read these definitions, so a renamed metric cannot leave one of them behind.
"""

from catalog.metrics import (
    ALL,
    MetricDef,
    MetricKind,
    by_name,
)

__all__ = ["ALL", "MetricDef", "MetricKind", "by_name"]
