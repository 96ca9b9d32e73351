"""The monitor's alerting endpoints: alerts, the notification history, silences and the
Alertmanager bridge. Mounted by `monitor.web.server.MonitorApi`, whose middlewares make errors JSON
and demand the API key on POST and DELETE. With `[cluster]` they answer on every instance:
alerts as the leader last published them, silences, acknowledgements and notifications from
Redis, Alertmanager payloads queued for the leader.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from alerts import alertmanager
from alerts.alerting import Alerting
from alerts.model import Alert
from alerts.silences import Silence, SilenceError, parse_duration, silence_id
from core.clock import Clock, utc_now
from monitor.web.bodies import BodyError, read_json
from monitor.web.errors import error


def alert_json(alert: Alert, state: str, muted: str | None,
               ack: dict[str, str] | None = None) -> dict[str, Any]:
    """`ack`: who acknowledged it and when ({"by", "at"}), or None."""
    return {"alertname": alert.name, "target": alert.labels.get("target"), "state": state,
            "ack": ack, "severity": alert.labels.get("severity"), "fingerprint": alert.fingerprint,
            "since": alert.starts_at.isoformat() if alert.starts_at else None,
            "muted": muted, "source": alert.source, "labels": dict(alert.labels),
            "annotations": dict(alert.annotations)}


def silence_json(s: Silence, now: datetime) -> dict[str, Any]:
    return {"id": s.id, "matchers": dict(s.matchers), "starts_at": s.starts_at.isoformat(),
            "ends_at": s.ends_at.isoformat(), "comment": s.comment,
            "created_by": s.created_by, "active": s.is_active(now)}


class AlertsApi:
    def __init__(self, alerting: Alerting, clock: Clock = utc_now) -> None:
        self.alerting = alerting
        self._clock = clock

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/alerts", self.alerts)
        router.add_get("/api/v1/notifications", self.notifications)
        router.add_get("/api/v1/silences", self.silences)
        router.add_post("/api/v1/silences", self.add_silence)
        router.add_delete("/api/v1/silences/{id}", self.delete_silence)
        router.add_post("/api/v1/alertmanager", self.from_alertmanager)

    async def alerts(self, _r: web.Request) -> web.Response:
        acks = await asyncio.to_thread(self.alerting.store.acks, self._clock())
        return web.json_response([alert_json(a, state, muted, acks.get(a.fingerprint))
                                  for a, state, muted in await self.alerting.view()])

    async def notifications(self, request: web.Request) -> web.Response:
        try:
            limit = min(1000, max(1, int(request.query.get("limit", "100"))))
        except ValueError:
            return error(400, "must be a whole number", "limit")
        return web.json_response(await asyncio.to_thread(self.alerting.store.history, limit))

    async def silences(self, _r: web.Request) -> web.Response:
        await self.alerting.refresh_silences()  # made on any instance
        now = self._clock()
        return web.json_response([silence_json(s, now)
                                  for s in self.alerting.silences.active(now)])

    async def add_silence(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
        except BodyError as exc:
            return error(exc.status, exc.message, exc.field)
        if not isinstance(body, dict):
            return error(422, "must be a JSON object")
        now = self._clock()
        matchers = body.get("matchers")
        if (not isinstance(matchers, dict) or not matchers
                or not all(isinstance(v, str) for v in matchers.values())):
            return error(422, 'must be an object of label values, like {"target": "eth"}',
                          "matchers")
        try:
            starts = _when(body.get("starts_at"), now, "starts_at")
            duration = body.get("duration", "1h")
            if not isinstance(duration, str):  # checked even when ends_at wins over it
                raise _Bad('must be a duration like "2h"', "duration")
            try:
                length = parse_duration(duration)
            except SilenceError as exc:
                raise _Bad(str(exc), "duration") from None
            if "ends_at" in body:
                ends = _when(body["ends_at"], now, "ends_at")
            else:
                try:
                    ends = starts + length
                except OverflowError:
                    raise _Bad("would end after the year 9999", "duration") from None
            comment, who = body.get("comment", ""), body.get("created_by", "api")
            if not isinstance(comment, str) or not isinstance(who, str):
                raise _Bad("must be a string", "comment" if not isinstance(comment, str)
                           else "created_by")
            silence = Silence(silence_id(matchers, who, now), dict(matchers), starts, ends,
                              comment[:500], who[:100])
        except _Bad as bad:
            return error(422, bad.message, bad.field)
        except SilenceError as exc:
            return error(422, str(exc), "ends_at")
        await self.alerting.add_silence(silence)
        return web.json_response(silence_json(silence, now), status=201)

    async def delete_silence(self, request: web.Request) -> web.Response:
        expired = await self.alerting.expire_silence(request.match_info["id"])
        if expired is None:
            return error(404, "no such silence", "id")
        return web.json_response(silence_json(expired, self._clock()))

    async def from_alertmanager(self, request: web.Request) -> web.Response:
        try:
            alerts = alertmanager.parse(await read_json(request))
        except BodyError as exc:
            return error(exc.status, exc.message, exc.field)
        except alertmanager.PayloadError as exc:
            return error(422, exc.message, exc.field)
        await self.alerting.receive_external(alerts)
        return web.json_response({"received": len(alerts)})


class _Bad(Exception):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def _when(value: Any, now: datetime, field: str) -> datetime:
    if value is None:
        return now
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise _Bad('must be an ISO 8601 time with a zone, like "2026-11-26T12:00:00Z"', field)
    try:
        year = when.astimezone(UTC).year
    except OverflowError:  # "9999-12-31T23:59:59-23:59" is past datetime's range in UTC
        raise _Bad("must lie within the years 1-9999 in UTC", field) from None
    if year > 9998:  # room left for the silence to last
        raise _Bad("must lie before the year 9999", field)
    return when if when > now - timedelta(days=3650) else now
