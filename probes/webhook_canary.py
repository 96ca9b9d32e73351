"""Options of the `webhook_canary` probe: a synthetic event sent through the webhook service
to a sink the monitor hosts, timed end to end. The probe itself ships with the service."""

from __future__ import annotations

from dataclasses import dataclass

from probes.base import OptionError, duration


@dataclass(frozen=True)
class WebhookCanaryOptions:
    max_delivery: float = duration(5.0)

    def __post_init__(self) -> None:
        if self.max_delivery <= 0:
            raise OptionError("max_delivery", "must be more than 0s", self.max_delivery)
