"""The webhook service end to end on SQLite: a real API server, a real local sink that
verifies Standard Webhooks signatures with the `standardwebhooks` package, retries, 410,
replay, the SSRF guard at delivery time, and a bad-input table for every route."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from monitor.config import ServiceSection
from service.app import Service
from tests.support.net import free_port
from tests.support.web import serve

KEY = "test-service-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Sink:
    """A local receiver: answers with the scripted statuses, then 200; keeps every hit."""

    url: str = ""
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hits: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append((dict(request.headers), await request.read()))
        self.arrived.set()
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=status, headers=headers, text="thanks")


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    app = web.Application()
    app.router.add_post("/hook", s.handle)
    async with serve(app) as base:
        s.url = f"{base}/hook"
        yield s


ServiceFactory = Callable[..., Any]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Service] = []

    async def start(**overrides: Any) -> str:
        listen = f"127.0.0.1:{free_port()}"
        settings = ServiceSection(**{"listen": listen, "api_keys": (KEY,),
                                     "allow_private_targets": True,
                                     "retry_schedule": (0.2, 0.2, 0.2), **overrides})
        svc = Service(settings, tmp_path)
        await svc.start()
        started.append(svc)
        return f"http://{listen}"

    yield start
    for svc in started:
        await svc.stop()


async def call(method: str, url: str, body: Any = None, raw: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with aiohttp.ClientSession() as http, http.request(
            method, url, data=data, headers=AUTH if headers is None else headers) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text and resp.content_type ==
                             "application/json" else text)


async def wait_state(base: str, event_id: str, state: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            _, event = await call("GET", f"{base}/v1/events/{event_id}")
            if event["deliveries"] and all(d["state"] == state for d in event["deliveries"]):
                return event  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def test_signed_delivery_verified_by_standard_webhooks(service: Any, sink: Sink) -> None:
    base = await service()
    status, endpoint = await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    assert status == 201 and endpoint["secret"].startswith("whsec_")
    status, accepted = await call("POST", f"{base}/v1/events",
                                  {"type": "transfer.detected", "data": {"amount": "1.5"}})
    assert status == 202
    event = await wait_state(base, accepted["id"], "delivered")
    headers, body = sink.hits[0]
    payload = Webhook(endpoint["secret"]).verify(body, headers)
    assert payload["data"] == {"amount": "1.5"} and payload["type"] == "transfer.detected"
    assert headers["webhook-id"] == event["deliveries"][0]["id"]
    attempt = event["deliveries"][0]["attempts"][0]
    assert attempt["status_code"] == 200 and attempt["response_body"] == "thanks"
    _, listed = await call("GET", f"{base}/v1/endpoints")
    assert "secret" not in listed[0]


async def test_retries_keep_the_webhook_id_then_deliver(service: Any, sink: Sink) -> None:
    base = await service()
    sink.script = [(500, {}), (302, {"Location": "http://example.invalid/"})]
    _, endpoint = await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    _, accepted = await call("POST", f"{base}/v1/events", {"type": "t", "data": 1})
    event = await wait_state(base, accepted["id"], "delivered")
    codes = [a["status_code"] for a in event["deliveries"][0]["attempts"]]
    assert codes == [500, 302, 200]  # a redirect is a failure, never followed
    assert len({h["webhook-id"] for h, _ in sink.hits}) == 1
    for headers, body in sink.hits:
        Webhook(endpoint["secret"]).verify(body, headers)


async def test_dead_after_last_retry_then_replay(service: Any, sink: Sink) -> None:
    base = await service()
    sink.script = [(500, {})] * 4
    _, endpoint = await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    _, accepted = await call("POST", f"{base}/v1/events", {"type": "t", "data": {}})
    event = await wait_state(base, accepted["id"], "dead")
    assert len(event["deliveries"][0]["attempts"]) == 4  # first try + 3 retries
    status, replayed = await call("POST", f"{base}/v1/endpoints/{endpoint['id']}/replay")
    assert (status, replayed) == (202, {"replayed": 1})
    await wait_state(base, accepted["id"], "delivered")


async def test_410_disables_the_endpoint(service: Any, sink: Sink) -> None:
    base = await service()
    sink.script = [(410, {})]
    _, endpoint = await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    _, accepted = await call("POST", f"{base}/v1/events", {"type": "t", "data": {}})
    await wait_state(base, accepted["id"], "dead")
    _, got = await call("GET", f"{base}/v1/endpoints/{endpoint['id']}")
    assert got["disabled"] is True and "410" in got["disabled_reason"]
    _, accepted = await call("POST", f"{base}/v1/events", {"type": "t", "data": {}})
    _, event = await call("GET", f"{base}/v1/events/{accepted['id']}")
    assert event["deliveries"] == []  # a disabled endpoint gets nothing new


async def test_retry_after_is_honoured(service: Any, sink: Sink) -> None:
    base = await service()
    sink.script = [(429, {"Retry-After": "1"})]
    await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    _, accepted = await call("POST", f"{base}/v1/events", {"type": "t", "data": {}})
    event = await wait_state(base, accepted["id"], "delivered")
    first, second = event["deliveries"][0]["attempts"]
    assert first["response_headers"].get("Retry-After") == "1"
    gap = (datetime_of(second["at"]) - datetime_of(first["at"])).total_seconds()
    assert gap >= 0.99  # not the 0.2 s of the schedule: the endpoint's word


def datetime_of(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


async def test_ssrf_guard_refuses_loopback_at_registration_and_delivery(
        service: Any, sink: Sink) -> None:
    base = await service(allow_private_targets=False)
    status, err = await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    assert status == 422 and err["field"] == "url" and "127.0.0.1" in err["error"]
    # a host name passes registration; what it resolves to is checked when delivering
    hostname_url = sink.url.replace("127.0.0.1", "localhost")
    status, _ = await call("POST", f"{base}/v1/endpoints", {"url": hostname_url})
    assert status == 201
    _, accepted = await call("POST", f"{base}/v1/events", {"type": "t", "data": {}})
    async with asyncio.timeout(20):
        while True:
            _, event = await call("GET", f"{base}/v1/events/{accepted['id']}")
            attempts = event["deliveries"][0]["attempts"]
            if attempts:
                break
            await asyncio.sleep(0.05)
    assert attempts[0]["status_code"] is None
    assert "SSRF" in attempts[0]["error"]
    assert sink.hits == []


async def test_idempotency_key_returns_the_first_id(service: Any, sink: Sink) -> None:
    base = await service()
    await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    body = {"type": "t", "data": {}, "idempotency_key": "k-1"}
    _, first = await call("POST", f"{base}/v1/events", body)
    _, second = await call("POST", f"{base}/v1/events", body)
    assert first == second
    _, batch = await call("POST", f"{base}/v1/events/batch", [body, {"type": "t", "data": 2}])
    assert batch["ids"][0] == first["id"] and batch["ids"][1] != first["id"]


BAD = [
    ("POST", "/v1/events", b"{not json", 400, None),
    ("POST", "/v1/events", b"[]", 422, None),
    ("POST", "/v1/events", b'{"data": 1}', 422, "type"),
    ("POST", "/v1/events", b'{"type": 5, "data": 1}', 422, "type"),
    ("POST", "/v1/events", b'{"type": "t"}', 422, "data"),
    ("POST", "/v1/events", b'{"type": "t", "data": 1, "x": 1}', 422, "x"),
    ("POST", "/v1/events", b'{"type": "t", "data": 1, "idempotency_key": 7}', 422,
     "idempotency_key"),
    ("POST", "/v1/events", json.dumps({"type": "t", "data": "x" * 300_000}).encode(), 413,
     "body"),
    ("POST", "/v1/events/batch", b'{"type": "t"}', 422, None),
    ("POST", "/v1/events/batch", json.dumps([{"type": "t", "data": 1}] * 1001).encode(), 413,
     None),
    ("POST", "/v1/events/batch", b'[{"type": "t", "data": 1}, {"type": "t"}]', 422,
     "[1].data"),
    ("GET", "/v1/events/evt_nope", None, 404, "id"),
    ("POST", "/v1/endpoints", b'{}', 422, "url"),
    ("POST", "/v1/endpoints", b'{"url": "ftp://x/"}', 422, "url"),
    ("POST", "/v1/endpoints", b'{"url": "https://example.com", "secret": "nope"}', 422,
     "secret"),
    ("POST", "/v1/endpoints", b'{"url": "https://example.com", "rate_limit": -1}', 422,
     "rate_limit"),
    ("POST", "/v1/endpoints", b'{"url": "https://example.com", "event_types": "t"}', 422,
     "event_types"),
    ("GET", "/v1/endpoints/ep_nope", None, 404, "id"),
    ("PATCH", "/v1/endpoints/ep_nope", b'{"disabled": true}', 404, "id"),
    ("PATCH", "/v1/endpoints/ep_nope", b'{"disabled": "yes"}', 422, "disabled"),
    ("DELETE", "/v1/endpoints/ep_nope", None, 404, "id"),
    ("POST", "/v1/endpoints/ep_nope/replay", b'{"since": "yesterday"}', 422, "since"),
    ("POST", "/v1/endpoints/ep_nope/replay", None, 404, "id"),
]


async def test_bad_input_is_a_json_error_naming_the_field(service: Any) -> None:
    base = await service()
    for method, path, raw, status, field_name in BAD:
        got, body = await call(method, base + path, raw=raw)
        assert (got, body["field"]) == (status, field_name), (method, path, body)
        assert body["error"] and "Traceback" not in body["error"]
    status, body = await call("POST", f"{base}/v1/events", {"type": "t", "data": 1},
                              headers={})
    assert (status, body["field"]) == (401, "Authorization")
    status, body = await call("GET", f"{base}/v1/endpoints",
                              headers={"Authorization": "Bearer wrong"})
    assert status == 401


async def test_health_readiness_metrics_and_openapi(service: Any, sink: Sink) -> None:
    base = await service()
    assert (await call("GET", f"{base}/healthz", headers={}))[0] == 200
    status, ready = await call("GET", f"{base}/readyz", headers={})
    assert (status, ready["status"]) == (200, "ready")
    await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    _, accepted = await call("POST", f"{base}/v1/events", {"type": "t", "data": 1})
    await wait_state(base, accepted["id"], "delivered")
    _, text = await call("GET", f"{base}/metrics", headers={})
    assert "crypitor_webhook_events_received_total 1.0" in text
    assert 'crypitor_webhook_deliveries_total{outcome="success"} 1.0' in text
    assert "crypitor_webhook_delivery_latency_seconds_count 1.0" in text
    _, spec = await call("GET", f"{base}/openapi.json", headers={})
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/endpoints",
        "/v1/endpoints/{id}", "/v1/endpoints/{id}/replay", "/v1/events",
        "/v1/events/batch", "/v1/events/{id}", "/v1/monitors", "/v1/monitors/{id}",
        "/v1/monitors/{id}/events"}


async def test_generated_key_file_when_none_configured(tmp_path: Path) -> None:
    svc = Service(ServiceSection(listen=f"127.0.0.1:{free_port()}"), tmp_path)
    await svc.start()
    await svc.stop()
    key_file = tmp_path / "service_api_key"
    assert key_file.stat().st_mode & 0o077 == 0 and len(key_file.read_text().strip()) >= 32


@dataclass
class SlowSink:
    url: str = ""
    active: int = 0
    peak: int = 0
    times: list[float] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.times.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.05)
        self.active -= 1
        return web.Response(status=204)


async def test_per_endpoint_concurrency_and_rate_limit(service: Any) -> None:
    slow = SlowSink()
    app = web.Application()
    app.router.add_post("/hook", slow.handle)
    async with serve(app) as sink_base:
        base = await service(max_in_flight_per_endpoint=2)
        _, endpoint = await call("POST", f"{base}/v1/endpoints",
                                 {"url": f"{sink_base}/hook"})
        _, accepted = await call("POST", f"{base}/v1/events/batch",
                                 [{"type": "t", "data": i} for i in range(20)])
        for event_id in accepted["ids"]:
            await wait_state(base, event_id, "delivered")
        assert slow.peak == 2  # the limit, and it was reached
        # a rate limit of 5/s: ten more deliveries need at least a second after the burst
        await call("PATCH", f"{base}/v1/endpoints/{endpoint['id']}", {"rate_limit": 5})
        slow.times.clear()
        _, accepted = await call("POST", f"{base}/v1/events/batch",
                                 [{"type": "t", "data": i} for i in range(10)])
        for event_id in accepted["ids"]:
            await wait_state(base, event_id, "delivered")
        assert len(slow.times) == 10 and slow.times[-1] - slow.times[0] >= 0.9


async def test_claims_that_waited_past_their_lease_are_not_sent_twice(service: Any) -> None:
    """One slow endpoint, one delivery at a time: claims queued behind the others would
    outlive their 10 s lease; they are left for the next claim instead of being sent while
    another claim of them may run."""
    hits: dict[str, int] = {}

    async def slow(request: web.Request) -> web.Response:
        hits[request.headers["webhook-id"]] = hits.get(request.headers["webhook-id"], 0) + 1
        await asyncio.sleep(1.5)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", slow)
    async with serve(app) as sink:
        base = await service(max_in_flight_per_endpoint=1, request_timeout=2.5)
        await call("POST", f"{base}/v1/endpoints", {"url": f"{sink}/hook"})
        _, accepted = await call("POST", f"{base}/v1/events/batch",
                                 [{"type": "t", "data": i} for i in range(8)])
        async with asyncio.timeout(40):
            for event_id in accepted["ids"]:
                await wait_state(base, event_id, "delivered")
    assert len(hits) == 8 and set(hits.values()) == {1}


async def test_queue_gauges(service: Any, sink: Sink) -> None:
    base = await service()
    sink.script = [(410, {})]
    await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    _, accepted = await call("POST", f"{base}/v1/events", {"type": "t", "data": {}})
    await wait_state(base, accepted["id"], "dead")
    async with asyncio.timeout(20):
        while True:  # the statistics refresh every few seconds
            _, text = await call("GET", f"{base}/metrics", headers={})
            if "crypitor_webhook_disabled_endpoints 1.0" in text:
                break
            await asyncio.sleep(0.2)
    assert "crypitor_webhook_queue_depth 0.0" in text
    assert "crypitor_webhook_oldest_pending_age_seconds 0.0" in text
    assert 'crypitor_webhook_deliveries_total{outcome="failed"} 1.0' in text


async def test_event_data_is_delivered_byte_for_byte(service: Any, sink: Sink) -> None:
    """Numbers past 64 bits (wei amounts) and the client's own spacing survive the trip."""
    base = await service()
    await call("POST", f"{base}/v1/endpoints", {"url": sink.url})
    raw = b'{"type": "t", "data": {"wei": 123456789012345678901234567890, "s": "\\u00e9"}}'
    status, accepted = await call("POST", f"{base}/v1/events", raw=raw)
    assert status == 202
    await wait_state(base, accepted["id"], "delivered")
    body = sink.hits[-1][1]
    assert body.endswith(b',"data":{"wei": 123456789012345678901234567890, "s": "\\u00e9"}}')
    assert json.loads(body)["data"]["wei"] == 123456789012345678901234567890
    _, view = await call("GET", f"{base}/v1/events/{accepted['id']}")
    assert view["data"] == {"wei": 123456789012345678901234567890, "s": "é"}


async def test_batch_errors_name_the_event_and_field(service: Any) -> None:
    base = await service()
    cases = [
        (b'[{"type": "t", "data": 1}, {"type": "t", "data": 1, "x": 2}]', 422, "[1].x"),
        (b'[{"type": "t", "data": 1}, {"type": 7, "data": 1}]', 422, "[1].type"),
        (b'[{"type": "bad type!", "data": 1}]', 422, "[0].type"),
        (b'[{"type": "t", "data": 1, "idempotency_key": ""}]', 422, "[0].idempotency_key"),
        (b'[{"type": "t", "data": "\xff"}]', 400, "[0].data"),
        (b'[{"type": "t", "data": [1,]}]', 400, None),
        (b'[5]', 422, "[0]"),
        (b'[]', 422, None),
    ]
    for raw, status, field_name in cases:
        got, body = await call("POST", f"{base}/v1/events/batch", raw=raw)
        assert (got, body["field"]) == (status, field_name), (raw, body)
        assert "Traceback" not in body["error"]
