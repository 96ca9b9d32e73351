"""What an alert says in plain words, for people paged at 3 am: a headline for a firing alert
("eth-main: HTTP 500, expected 200", "eth-main is 12 blocks behind eth-ref") and what recovered
for a resolved one ("eth-main is up again"). Plain text: the transports escape it.

A probe's failure (its `failure_reason` and `detail` annotations) words the headline when the
rule is about that failure (TargetDown's `success`, NodeLagging's `block_lag` ...); otherwise
the rule's own summary does, as the operator wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from alerts.model import Alert

_NAME = re.compile(r"[A-Za-z_]\w*")

# failure_reason → words, for a failure whose detail has no shape read below
REASONS = {
    "timeout": "timed out", "dns": "the host name does not resolve",
    "refused": "connection refused", "connect": "cannot connect", "tls": "TLS failed",
    "status": "unexpected HTTP status", "body": "the body does not match",
    "json": "the JSON check failed", "protocol": "the answer is not valid HTTP",
    "rpc_error": "the node answered with an error", "rate_limited": "rate limited",
    "too_large": "the answer is too large", "malformed": "the node's answer is malformed",
    "chain_id": "on the wrong chain", "syncing": "syncing", "lag": "behind its reference",
    "stale": "the head block is stale", "peers": "too few peers",
    "state": "the server is not healthy", "load": "the server is overloaded",
    "slow": "deliveries are too slow", "config": "cannot run (configuration)",
    "internal": "the probe failed (a bug in the monitor)",
}

Shape = tuple[re.Pattern[str], Callable[[str, re.Match[str]], str], frozenset[str]]
# a detail's shape → its headline, and the probe values a rule names when it is about it
_SHAPES: dict[str, Shape] = {
    "status": (re.compile(r"status (\d{3}), expected (.+)"),
               lambda t, m: f"{t}: HTTP {m[1]}, expected {m[2]}", frozenset({"status_code"})),
    "timeout": (re.compile(r"(timed out after \S+(?: [^(]+)?)"),
                lambda t, m: f"{t}: {m[1].strip()}", frozenset()),
    "lag": (re.compile(r"(\d+) blocks behind reference (\S+)"),
            lambda t, m: f"{t} is {m[1]} blocks behind {m[2]}", frozenset({"block_lag"})),
    "stale": (re.compile(r"head block (\d+) is (\d+)s old"),
              lambda t, m: f"{t}: head block {m[1]} is {m[2]}s old",
              frozenset({"head_age_seconds"})),
    "peers": (re.compile(r"(\d+) peers, at least (\d+) wanted"),
              lambda t, m: f"{t} has {m[1]} peers, at least {m[2]} wanted",
              frozenset({"peers"})),
    "syncing": (re.compile(r""), lambda t, m: f"{t} is syncing", frozenset({"syncing"})),
}

# the first probe value a condition names → what its end means
RECOVERED = {
    "success": "{target} is up again",
    "block_lag": "{target} has caught up",
    "head_age_seconds": "{target} has a fresh head block again",
    "head_block": "{target} moves again",
    "peers": "{target} has enough peers again",
    "syncing": "{target} has finished syncing",
    "cert_expiry_days": "{target}'s TLS certificate no longer expires soon",
    "delivery_failure_ratio": "webhook deliveries succeed again",
    "oldest_pending_age_seconds": "the webhook queue has caught up",
    "deep_reorgs_1h": "no deep reorg on chain {chain} for an hour",
}


def condition_names(alert: Alert) -> list[str]:
    """The probe values the alert's condition names, in order."""
    return _NAME.findall(alert.annotations.get("condition", ""))


def probe_words(target: str, reason: str, detail: str) -> tuple[str, frozenset[str]] | None:
    """The headline a probe failure gives, and the values a rule must name to use it."""
    shape = _SHAPES.get(reason)
    if shape is not None:
        pattern, words, names = shape
        match = pattern.search(detail)
        if match is not None:
            return words(target, match), names
    if reason in REASONS:
        return f"{target}: {REASONS[reason]}", frozenset()
    return None


def from_probe(alert: Alert) -> bool:
    """Whether `headline` words this alert from its probe's failure (so its detail needs
    no line of its own)."""
    return _probe_headline(alert) is not None


def _probe_headline(alert: Alert) -> str | None:
    target = alert.labels.get("target", "")
    reason = alert.annotations.get("failure_reason", "")
    if not target or not reason:
        return None
    words = probe_words(target, reason, alert.annotations.get("detail", ""))
    names = set(condition_names(alert))
    if words is None or not ("success" in names or names & words[1]):
        return None
    return words[0]


def headline(alert: Alert) -> str:
    """A firing alert in one line of plain words."""
    probe = _probe_headline(alert)
    if probe is not None:
        return probe
    summary = alert.annotations.get("summary", "").strip()
    if summary:
        return summary
    target = alert.labels.get("target")
    return f"{alert.name} on {target}" if target else (alert.name or "alert")


def recovered(alert: Alert) -> str:
    """What a resolved alert's end means, in plain words; never its firing headline."""
    target = alert.labels.get("target", "")
    for name in condition_names(alert):
        words = RECOVERED.get(name)
        if words is not None and (target or "{target}" not in words):
            return words.format(target=target, chain=alert.labels.get("chain", "?"))
    where = f" on {target}" if target else ""
    return f"{alert.name or 'the alert'}{where} is over"
