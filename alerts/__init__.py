"""Alerting: rules over probe values, the alert state machine, routing (groups, silences,
maintenance windows, inhibition), a durable outbox and the receivers (Telegram, and webhook:
Alertmanager's JSON).

Errors:

    AlertError          base class
    ├── ConditionError  a rule condition does not parse (`.position` points at the spot)
    ├── NotifyError     a notifier could not deliver (`.retry_after`: seconds, or None
    │                   when retrying cannot help)
    ├── NotLeader       a write only the alerting leader may make was refused: another
    │                   instance holds the lease now (`[cluster]` only)
    ├── SilenceError    a silence that cannot be (bad duration, unknown name; also a
    │                   ValueError), in `alerts.silences`
    └── PayloadError    an Alertmanager payload that does not parse (`.field`: its JSON
                        path; also a ValueError), in `alerts.alertmanager`

Outside the tree: `store.AlertStore` refuses a file of a schema version it does not know
with `core.formats.FormatError`, which `core` defines for every stored format.
"""

from __future__ import annotations


class AlertError(Exception):
    pass


class ConditionError(AlertError):
    def __init__(self, message: str, text: str, position: int) -> None:
        super().__init__(f"{message} at position {position}: {text[:position]}>>>{text[position:]}")
        self.message, self.text, self.position = message, text, position


class NotifyError(AlertError):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotLeader(AlertError):
    """A fenced write was refused: this instance no longer leads the cluster's alerting."""
