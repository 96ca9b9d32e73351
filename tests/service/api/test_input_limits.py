"""The service API's input limits on a real server: every request that once made a handler
answer 500 (or stored what it should have refused) is a 4xx JSON error naming the field, with
nothing logged at ERROR; and a `rate_limit` outside the range, stored by an older version,
no longer stops delivery."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.config import ChainFollowConfig, ServiceSection
from service.app import Service
from service.models import Endpoint
from tests.support.net import free_port
from tests.support.web import serve

pytestmark = pytest.mark.timeout(60)
KEY = "test-service-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# a chain monitors may name; its follower finds no node there and keeps retrying, unseen
CHAINS = {"ethereum": ChainFollowConfig("http://127.0.0.1:1", confirmations=12)}
ADDRESS = "0x" + "1" * 40


@dataclass
class Api:
    base: str
    service: Service

    async def call(self, method: str, path: str, raw: bytes | None = None,
                   body: Any = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode()
                                            if body is not None else None)
        async with aiohttp.ClientSession() as http, http.request(
                method, self.base + path, data=data, headers=AUTH) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if resp.content_type == "application/json"
                                 else text)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    listen = f"127.0.0.1:{free_port()}"
    service = Service(ServiceSection(listen=listen, api_keys=(KEY,), chains=CHAINS,
                                     allow_private_targets=True, retry_schedule=(0.2,)),
                      tmp_path)
    await service.start()
    try:
        yield Api(f"http://{listen}", service)
    finally:
        await service.stop()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def endpoint(**fields: Any) -> bytes:
    return json.dumps({"url": "https://hooks.example.com/x", **fields}).encode()


def event_with(data: str, **fields: str) -> bytes:
    extra = "".join(f', "{k}": {v}' for k, v in fields.items())
    return f'{{"type": "t", "data": {data}{extra}}}'.encode()


def monitor(**fields: Any) -> bytes:
    return json.dumps({"chain": "ethereum", "addresses": [ADDRESS],
                       "endpoint_id": "{endpoint}", **fields}).encode()


LONE = '"\\udc80"'  # JSON for a lone low surrogate: valid JSON, not valid Unicode
BIG_INT = "1" + "0" * 400
HUGE_INT = "9" * 5000  # past Python's own 4,300-digit limit on int()

# method, path, body, status, field
CASES: list[tuple[str, str, bytes | None, int, str | None]] = [
    # ids past SQLite's 2^63 row ids
    ("GET", "/v1/monitors/{monitor}/events?before=evt_ffffffffffffffff", None, 422, "before"),
    ("GET", "/v1/monitors/{monitor}/events?before=evt_8000000000000000", None, 422, "before"),
    ("GET", "/v1/events/evt_ffffffffffffffff", None, 404, "id"),
    # nesting: past MAX_DEPTH (64), and past the decoders' own recursion limits
    ("POST", "/v1/events", event_with(nested(65)), 422, "data"),
    ("POST", "/v1/events", event_with(nested(1000)), 422, "data"),
    ("POST", "/v1/events", event_with('{"a": ' * 20_000 + "1" + "}" * 20_000), 422, "data"),
    ("POST", "/v1/events/batch", b"[" + event_with("1") + b", " + event_with(nested(1000))
     + b"]", 422, "[1].data"),
    ("POST", "/v1/events/batch", b"[" + event_with(nested(100)) + b"]", 422, "[0].data"),
    ("POST", "/v1/endpoints", endpoint(description=json.loads(nested(65))), 422,
     "description"),
    ("POST", "/v1/endpoints",
     b'{"url": "https://hooks.example.com/x", "description": ' + nested(5000).encode()
     + b"}", 422, "description"),
    ("POST", "/v1/monitors", b'{"conditions": ' + nested(3000).encode() + b"}", 422,
     "conditions"),
    # numbers too large for a field, or not numbers at all
    ("POST", "/v1/endpoints", endpoint()[:-1] + f', "rate_limit": {BIG_INT}}}'.encode(), 422,
     "rate_limit"),
    ("POST", "/v1/endpoints", endpoint()[:-1] + f', "rate_limit": {HUGE_INT}}}'.encode(), 422,
     "rate_limit"),
    ("POST", "/v1/endpoints", endpoint()[:-1] + b', "rate_limit": NaN}', 422, "rate_limit"),
    ("POST", "/v1/endpoints", endpoint()[:-1] + b', "rate_limit": Infinity}', 422,
     "rate_limit"),
    ("POST", "/v1/endpoints", endpoint()[:-1] + b', "rate_limit": -Infinity}', 422,
     "rate_limit"),
    ("POST", "/v1/endpoints", endpoint()[:-1] + b', "rate_limit": 1e400}', 422, "rate_limit"),
    ("POST", "/v1/endpoints", endpoint(rate_limit=1e-12), 422, "rate_limit"),
    ("POST", "/v1/endpoints", endpoint(rate_limit=0.0009), 422, "rate_limit"),
    ("POST", "/v1/endpoints", endpoint(rate_limit=100_001), 422, "rate_limit"),
    ("PATCH", "/v1/endpoints/{endpoint}", b'{"rate_limit": 1e-12}', 422, "rate_limit"),
    ("POST", "/v1/monitors", monitor()[:-1] + f', "confirmations": {BIG_INT}}}'.encode(), 422,
     "confirmations"),
    ("POST", "/v1/monitors", monitor()[:-1] + f', "confirmations": {HUGE_INT}}}'.encode(),
     422, "confirmations"),
    # lone surrogates in string fields
    ("POST", "/v1/events", f'{{"type": {LONE}, "data": 1}}'.encode(), 400, "type"),
    ("POST", "/v1/events", event_with("1", idempotency_key=LONE), 400, "idempotency_key"),
    ("POST", "/v1/events", event_with(f'{{"memo": {LONE}}}'), 400, "data"),
    ("POST", "/v1/events/batch", b"[" + event_with("1") + b", " + event_with(LONE) + b"]",
     400, "[1].data"),
    ("POST", "/v1/endpoints", f'{{"url": {LONE}}}'.encode(), 400, "url"),
    ("POST", "/v1/endpoints", endpoint()[:-1] + f', "description": {LONE}}}'.encode(), 400,
     "description"),
    ("POST", "/v1/endpoints", endpoint()[:-1] + f', "event_types": [{LONE}]}}'.encode(), 400,
     "event_types[0]"),
    ("POST", "/v1/endpoints", endpoint()[:-1] + f', {LONE}: 1}}'.encode(), 400, "\\udc80"),
    ("PATCH", "/v1/endpoints/{endpoint}", f'{{"description": {LONE}}}'.encode(), 400,
     "description"),
    ("POST", "/v1/endpoints/{endpoint}/replay", f'{{"since": {LONE}}}'.encode(), 400, "since"),
    ("POST", "/v1/monitors", monitor()[:-1] + f', "tags": ["a", {LONE}]}}'.encode(), 400,
     "tags[1]"),
    ("PATCH", "/v1/monitors/{monitor}", f'{{"tags": [{LONE}]}}'.encode(), 400, "tags[0]"),
    # strings past their limits
    ("POST", "/v1/endpoints", endpoint(description="x" * 1001), 422, "description"),
    ("POST", "/v1/endpoints", endpoint(secret="whsec_" + "A" * 10_000), 422, "secret"),
    ("POST", "/v1/monitors", monitor(endpoint_id="x" * 10_000), 422, "endpoint_id"),
    # urls that would be sent as something else, or are megabytes long
    ("POST", "/v1/endpoints", endpoint(url="https://hooks.example.com/a b"), 422, "url"),
    ("POST", "/v1/endpoints", endpoint(url="https://hooks.example.com/a\r\nX-Evil: 1"), 422,
     "url"),
    ("POST", "/v1/endpoints", endpoint(url="https://hooks.example.com/a\n"), 422, "url"),
    ("POST", "/v1/endpoints", endpoint(url="https://hooks.example.com/a\tb"), 422, "url"),
    ("POST", "/v1/endpoints", endpoint(url="https://hooks.example.com/" + "a" * 8192), 422,
     "url"),
    ("PATCH", "/v1/endpoints/{endpoint}", json.dumps({"url": "https://a.example.com/ x"})
     .encode(), 422, "url"),
    # event types: how many, and each one
    ("POST", "/v1/endpoints", endpoint(event_types=[f"t{i}" for i in range(1001)]), 422,
     "event_types"),
    ("POST", "/v1/endpoints", endpoint(event_types=["ok", "x" * 201]), 422, "event_types[1]"),
    ("POST", "/v1/endpoints", endpoint(event_types=["ok", 5]), 422, "event_types[1]"),
    # null where only true or false means something
    ("PATCH", "/v1/endpoints/{endpoint}", b'{"disabled": null}', 422, "disabled"),
    # a batch large enough to be checked on a worker thread
    ("POST", "/v1/events/batch", b"[" + b", ".join(
        [event_with("[" + ",".join(["1"] * 100_000) + "]")] * 5 + [event_with(LONE)]) + b"]",
     400, "[5].data"),
    # bodies past their route's size
    ("POST", "/v1/endpoints", endpoint(description="x" * 2**20), 413, "body"),
    ("POST", "/v1/endpoints/{endpoint}/replay", json.dumps({"since": "x" * 2**20}).encode(),
     413, "body"),
    # an empty batch: the schema says minItems 1, and so does the route
    ("POST", "/v1/events/batch", b"[]", 422, None),
]


@pytest.mark.parametrize(("method", "path", "raw", "status", "field_name"), CASES,
                         ids=[f"{i}-{c[0]} {c[1][:40]}" for i, c in enumerate(CASES)])
async def test_bad_input_is_a_4xx_json_error_naming_the_field(
        api: Api, caplog: pytest.LogCaptureFixture, method: str, path: str,
        raw: bytes | None, status: int, field_name: str | None) -> None:
    _, created = await api.call("POST", "/v1/endpoints", endpoint())
    _, watching = await api.call("POST", "/v1/monitors",
                                 monitor().replace(b"{endpoint}", created["id"].encode()))
    names = {"{endpoint}": created["id"], "{monitor}": watching["id"]}
    for placeholder, value in names.items():
        path = path.replace(placeholder, value)
        raw = raw.replace(placeholder.encode(), value.encode()) if raw else raw
    with caplog.at_level(logging.ERROR):
        got, answer = await api.call(method, path, raw=raw)
    assert isinstance(answer, dict), answer
    assert (got, answer["field"]) == (status, field_name), answer
    assert answer["error"] and "Traceback" not in answer["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    _, endpoints = await api.call("GET", "/v1/endpoints")
    assert [e["id"] for e in endpoints] == [created["id"]]  # nothing was stored


async def test_limits_at_the_edge_of_the_range_are_taken(api: Api) -> None:
    """What the limits allow still passes: the refusals above are the limits, not more."""
    for rate in (0.001, 100_000, 2.5, None):
        status, created = await api.call("POST", "/v1/endpoints", endpoint(rate_limit=rate))
        assert (status, created["rate_limit"]) == (201, rate)
    status, _ = await api.call("POST", "/v1/endpoints", endpoint(
        url="https://hooks.example.com/" + "a" * 8000,
        event_types=[f"t{i}" for i in range(1000)], description="é" * 1000))
    assert status == 201
    status, _ = await api.call("POST", "/v1/events", event_with(nested(64)))
    assert status == 202
    # numbers of any size and paired surrogates are data like any other
    status, _ = await api.call("POST", "/v1/events",
                               event_with(f'{{"wei": {BIG_INT}, "s": "\\ud83d\\ude00"}}'))
    assert status == 202
    _, created = await api.call("POST", "/v1/endpoints", endpoint())
    status, patched = await api.call("PATCH", f"/v1/endpoints/{created['id']}",
                                     body={"disabled": True})
    assert (status, patched["disabled"]) == (200, True)


async def test_a_stored_rate_limit_past_the_range_does_not_stop_delivery(api: Api) -> None:
    """A store written before the API checked `rate_limit` holds 1e-12 for one endpoint:
    pacing by it once overflowed and killed the dispatcher, so no endpoint got anything.
    Now it is paced at the lowest rate allowed, and every other endpoint is served."""
    hits: dict[str, list[bytes]] = {"slow": [], "other": []}
    arrived = asyncio.Event()

    async def sink(request: web.Request) -> web.Response:
        hits[request.match_info["name"]].append(await request.read())
        arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{name}", sink)
    async with serve(app) as base:
        await api.service.store.put_endpoint(Endpoint(
            id="ep_old", url=f"{base}/slow", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            event_types=("slow",), rate_limit=1e-12))
        await api.call("POST", "/v1/endpoints",
                                  body={"url": f"{base}/other", "event_types": ["other"]})
        status, first = await api.call("POST", "/v1/events", event_with("1").replace(
            b'"t"', b'"slow"'))
        assert status == 202
        async with asyncio.timeout(20):
            while not hits["slow"]:  # its first delivery: nothing timed yet, nothing paced
                await arrived.wait()
                arrived.clear()
        # its next ones are paced by the stored rate; the one after them goes elsewhere
        batch = [{"type": "slow", "data": 2}, {"type": "slow", "data": 3},
                 {"type": "other", "data": 4}]
        status, _ = await api.call("POST", "/v1/events/batch", body=batch)
        assert status == 202
        async with asyncio.timeout(20):
            while not hits["other"]:
                await arrived.wait()
                arrived.clear()
        await api.call("POST", "/v1/events", body={"type": "other", "data": 5})
        async with asyncio.timeout(20):
            while len(hits["other"]) < 2:  # the dispatcher lives on
                await arrived.wait()
                arrived.clear()
    assert len(hits["slow"]) == 1
    status, view = await api.call("GET", f"/v1/events/{first['id']}")
    assert view["deliveries"][0]["state"] == "delivered"


async def test_the_openapi_description_states_the_limits_the_routes_apply(api: Api) -> None:
    status, spec = await api.call("GET", "/openapi.json")
    assert status == 200
    batch = spec["paths"]["/v1/events/batch"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 1000)
    fields = spec["components"]["schemas"]["EndpointIn"]["properties"]
    assert (fields["rate_limit"]["minimum"], fields["rate_limit"]["maximum"]) == (0.001, 1e5)
    assert fields["url"]["maxLength"] == 8192 and fields["event_types"]["maxItems"] == 1000
    limits = spec["info"]["description"]
    for stated in ("64 levels", "8,192 characters", "lone surrogate", "NaN", "1 to 1,000"):
        assert stated in limits


async def test_a_405_says_which_methods_the_path_takes(api: Api) -> None:
    async with aiohttp.ClientSession() as http, http.request(
            "TRACE", f"{api.base}/v1/endpoints", headers=AUTH) as resp:
        assert resp.status == 405 and set(resp.headers["Allow"].split(",")) >= {"GET", "POST"}
        assert (await resp.json())["error"]
