"""The monitor's HTTP surface: the server (`/metrics`, `/healthz`, the targets API, the canary
sink), the alerting routes mounted on it, and the status page at `/`.
"""

from monitor.web.alerts_api import AlertsApi
from monitor.web.server import MonitorApi

__all__ = ["AlertsApi", "MonitorApi"]
