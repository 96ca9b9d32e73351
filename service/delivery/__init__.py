"""Delivering events to endpoints: the dispatcher (per-endpoint lanes of workers), the one
module that owns delivery state transitions (`state`), pacing that keeps endpoints apart, and
the SSRF guard where addresses are dialled (`wire`, the dispatcher's pooled HTTP client;
`guarded_connector` for aiohttp sessions). Signing is `core.signing`.
"""

from service.delivery.dispatcher import DispatchConfig, Dispatcher
from service.delivery.saturation import Saturation
from service.delivery.ssrf import Guard, check_url, guarded_connector
from service.delivery.state import Policy
from service.delivery.wire import WebhookClient

__all__ = ["DispatchConfig", "Dispatcher", "Guard", "Policy", "Saturation", "WebhookClient",
           "check_url", "guarded_connector"]
