"""The service's HTTP API on aiohttp: `server` (endpoints, events, health; auth), the
address-monitor routes, request parsing (`parsing`, `monitor_parsing`), the JSON views of
stored values and the OpenAPI description.
"""

from service.api.base import ApiDeps
from service.api.server import ServiceApi

__all__ = ["ApiDeps", "ServiceApi"]
