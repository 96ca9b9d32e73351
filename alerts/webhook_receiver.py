"""One `[[alerts.receivers]]` entry of type webhook: every group notification as Alertmanager's
webhook JSON (version 4, which PagerDuty, Opsgenie and every Alertmanager integration read),
rendered into the outbox and POSTed by alerting's sender loop, so retries and restarts lose none.

With a `secret`, each POST carries the Standard Webhooks headers (`core.signing`), and the
`webhook-id` is the same on every retry of one notification. The URL is the operator's (no
SSRF guard), but it may hold a token: neither it nor the secret reaches a log line or an
error, which name the receiver and the URL's host only.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from alerts import NotifyError
from alerts.model import Alert, Notification
from alerts.store import Queued
from core.clock import Clock, utc_now
from core.signing import Signer

VERSION = "4"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing
USER_AGENT = "crypitor-monitor (alert webhook)"
RETRY_HINT = 5.0  # seconds before retrying after a network error, a timeout or a 5xx
MAX_ANSWER = 64 * 1024  # bytes of an answer read (and dropped) before the connection is reused
TargetURL = Callable[[str], str]  # target name → its URL as it may be shown ("": unknown)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every map holds, as Alertmanager's commonLabels and commonAnnotations."""
    if not maps:
        return {}
    first, rest = maps[0], maps[1:]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def payload(note: Notification, now: datetime, external_url: str = "",
            target_url: TargetURL | None = None) -> dict[str, Any]:
    """The Alertmanager webhook body (version 4) of one group notification: its firing
    alerts, then those just resolved. A native alert's annotations gain `target_url`, the
    target's URL without credentials, when `target_url` knows it."""
    generator = f"{external_url.rstrip('/')}/api/v1/alerts" if external_url else ""

    def one(alert: Alert) -> dict[str, Any]:
        annotations = dict(alert.annotations)
        target = alert.labels.get("target", "")
        url = target_url(target) if target_url is not None and target else ""
        if url and "target_url" not in annotations:
            annotations["target_url"] = url
        resolved = alert.status == "resolved"
        return {"status": alert.status, "labels": dict(alert.labels),
                "annotations": annotations,
                "startsAt": rfc3339(alert.starts_at or now),
                "endsAt": rfc3339(alert.ends_at or now) if resolved else ZERO_TIME,
                "generatorURL": generator, "fingerprint": alert.fingerprint}

    alerts = [one(a) for a in (*note.firing, *note.resolved)]
    return {"version": VERSION, "groupKey": note.group_key, "truncatedAlerts": 0,
            "status": "firing" if note.firing else "resolved", "receiver": note.receiver,
            "groupLabels": dict(note.group_labels),
            "commonLabels": _common([a["labels"] for a in alerts]),
            "commonAnnotations": _common([a["annotations"] for a in alerts]),
            "externalURL": external_url, "alerts": alerts}


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks for (delay-seconds or an HTTP date), or None."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class WebhookReceiver:
    """Renders notifications as Alertmanager's JSON and POSTs them. 2xx is delivered; 408,
    429 (waiting out Retry-After), 5xx, timeouts and network errors are NotifyErrors to retry;
    any other answer (a 4xx, a redirect) is one that retrying cannot help. One HTTP session,
    opened on first use, closed by `close()`."""

    def __init__(self, name: str, url: str, secret: str = "", *, timeout: float = 10.0,
                 external_url: str = "", target_url: TargetURL | None = None,
                 clock: Clock = utc_now) -> None:
        """`secret`: a `whsec_` secret (ValueError, never quoting it, when malformed)."""
        self._name, self._url = name, url
        self._host = urlsplit(url).hostname or "?"
        self._signer = Signer(secret) if secret else None
        self._timeout = timeout
        self._external_url, self._target_url = external_url, target_url
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def signed(self) -> bool:
        return self._signer is not None

    def render(self, note: Notification) -> tuple[str, tuple[tuple[str, str], ...]]:
        body = payload(note, self._clock(), self._external_url, self._target_url)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")), ()

    def message_id(self, item: Queued) -> str:
        """The `webhook-id` of an outbox item: the same on each retry, and not the same for
        another item, even one with an equal body (a repeat) or after a store was reset."""
        digest = hashlib.sha256(f"{self._name}\x00{item.id}\x00{item.text}".encode())
        return "msg_" + digest.hexdigest()[:32]

    async def send(self, item: Queued) -> tuple[str, int]:
        body = item.text.encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._signer is not None:
            headers |= self._signer.headers(self.message_id(item),
                                            int(self._clock().timestamp()), body)
        where = f"webhook receiver {self._name} ({self._host})"
        try:
            async with self._open().post(
                    self._url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self._timeout)) as response:
                await response.content.read(MAX_ANSWER)
                status, wait = response.status, response.headers.get("Retry-After")
        except TimeoutError:
            raise NotifyError(f"{where}: no answer within {self._timeout:g}s",
                              RETRY_HINT) from None
        except aiohttp.ClientError as exc:  # its text may quote the URL: the type only
            raise NotifyError(f"{where}: {type(exc).__name__}", RETRY_HINT) from None
        if 200 <= status < 300:
            return "", 0
        if status == 429:
            asked = retry_after(wait, self._clock())
            raise NotifyError(f"{where}: HTTP 429", RETRY_HINT if asked is None else asked)
        if status == 408 or status >= 500:
            raise NotifyError(f"{where}: HTTP {status}", RETRY_HINT)
        raise NotifyError(f"{where}: HTTP {status}, which retrying cannot change", None)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
