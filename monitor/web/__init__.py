"""The monitor's HTTP surface: the server (`/metrics`, `/healthz`, the targets API, the canary
sink), the alerting routes mounted on it, and the status page (`/`, `/api/v1/status`, badges,
the Atom feed), also servable alone on a second listener.
"""

from monitor.web.alerts_api import AlertsApi
from monitor.web.server import MonitorApi
from monitor.web.status_api import StatusRoutes
from monitor.web.status_data import Slos, Sources, StatusBoard

__all__ = ["AlertsApi", "MonitorApi", "Slos", "Sources", "StatusBoard", "StatusRoutes"]
