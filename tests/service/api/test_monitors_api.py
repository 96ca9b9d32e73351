"""The /v1/monitors routes on a real API server, once per store backend: create, list, get,
patch (enable, addresses by the thousand), delete, the event history, EIP-55 checking, and a
bad-input table naming the field for every route."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest

from chains.keccak import to_checksums
from monitor.config import ChainFollowConfig, ServiceSection
from service.app import Service
from service.models import MatchRecord, Monitor, NewEvent
from service.store.redis import RedisStore
from tests.support.net import free_port
from tests.support.redis_server import RedisKeyspace
from tests.support.stores import StoreFactory

pytestmark = pytest.mark.timeout(90)
KEY = "test-service-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# chains monitors may name; their followers find no node there and keep retrying, unseen
CHAINS = {"ethereum": ChainFollowConfig("http://127.0.0.1:1", confirmations=12),
          "polygon": ChainFollowConfig("http://127.0.0.1:1", confirmations=64)}
CHECKSUMMED = ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
               "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
               "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
               "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"]


def addr(n: int) -> str:
    return f"0x{n:040x}"


Call = Callable[..., Awaitable[tuple[int, Any]]]


@dataclass
class Api:
    base: str
    service: Service

    async def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode()
                                            if body is not None else None)
        async with aiohttp.ClientSession() as http, http.request(
                method, self.base + path, data=data,
                headers=AUTH if headers is None else headers) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text and resp.content_type ==
                                 "application/json" else text)

    async def endpoint(self) -> str:
        status, created = await self.call("POST", "/v1/endpoints",
                                          {"url": "https://hooks.example.com/x"})
        assert status == 201
        return str(created["id"])

    async def monitor(self, **fields: Any) -> dict[str, Any]:
        body = {"chain": "ethereum", "addresses": [addr(1)], **fields}
        if "endpoint_id" not in body:
            body["endpoint_id"] = await self.endpoint()
        status, created = await self.call("POST", "/v1/monitors", body)
        assert status == 201, created
        return created  # type: ignore[no-any-return]


@pytest.fixture
async def api(tmp_path: Path, store_factory: StoreFactory) -> AsyncIterator[Api]:
    listen = f"127.0.0.1:{free_port()}"
    service = Service(ServiceSection(listen=listen, api_keys=(KEY,), chains=CHAINS), tmp_path,
                      store=store_factory())
    await service.start()
    try:
        yield Api(f"http://{listen}", service)
    finally:
        await service.stop()


async def test_create_get_list_delete(api: Api) -> None:
    endpoint_id = await api.endpoint()
    created = await api.monitor(
        endpoint_id=endpoint_id, tags=["treasury", "treasury", "hot"],
        addresses=[addr(0xAB), addr(0xAB).upper().replace("0X", "0x"), CHECKSUMMED[0],
                   CHECKSUMMED[0].lower()],
        conditions={"erc20": True, "contracts": [CHECKSUMMED[1]]})
    assert created["id"].startswith("mon_") and "addresses" not in created
    assert created == {
        "id": created["id"], "chain": "ethereum", "endpoint_id": endpoint_id,
        "enabled": True, "direction": "all",
        "conditions": {"native": False, "erc20": True, "erc721": False,
                       "contracts": [CHECKSUMMED[1].lower()]},
        "confirmations": None, "effective_confirmations": 12, "tags": ["treasury", "hot"],
        "address_count": 2, "created_at": created["created_at"]}
    status, got = await api.call("GET", f"/v1/monitors/{created['id']}")
    assert status == 200
    assert got == {**created, "addresses": sorted([addr(0xAB), CHECKSUMMED[0].lower()])}

    other = await api.monitor(chain="polygon", confirmations=0, direction="in")
    assert (other["effective_confirmations"], other["direction"]) == (0, "in")
    assert other["conditions"] == {"native": True, "erc20": True, "erc721": True,
                                   "contracts": []}
    status, listed = await api.call("GET", "/v1/monitors")
    assert status == 200 and listed == [created, other]  # oldest first, no address lists
    assert (await api.call("GET", "/v1/monitors?chain=polygon"))[1] == [other]
    assert (await api.call("GET", "/v1/monitors?chain=bitcoin"))[1] == []

    assert (await api.call("DELETE", f"/v1/monitors/{created['id']}"))[0] == 204
    assert (await api.call("GET", f"/v1/monitors/{created['id']}"))[0] == 404
    assert (await api.call("DELETE", f"/v1/monitors/{created['id']}"))[0] == 404
    assert (await api.call("GET", "/v1/monitors"))[1] == [other]


async def test_mixed_case_must_be_a_valid_eip55_checksum(api: Api) -> None:
    endpoint_id = await api.endpoint()
    upper = "0x" + CHECKSUMMED[2][2:].upper()
    created = await api.monitor(endpoint_id=endpoint_id, addresses=[*CHECKSUMMED, upper])
    assert created["address_count"] == 4  # the upper-case one is the same address
    typo = CHECKSUMMED[3][:-1] + CHECKSUMMED[3][-1].swapcase()  # "...9aDb" -> "...9aDB"
    body = {"chain": "ethereum", "endpoint_id": endpoint_id,
            "addresses": [addr(1), *CHECKSUMMED, typo]}
    status, error = await api.call("POST", "/v1/monitors", body)
    assert (status, error["field"]) == (422, "addresses[5]") and "EIP-55" in error["error"]
    status, error = await api.call("PATCH", f"/v1/monitors/{created['id']}",
                                   {"add_addresses": [addr(5), typo.lower(), typo]})
    assert (status, error["field"]) == (422, "add_addresses[2]")
    status, error = await api.call(
        "GET", f"/v1/monitors/{created['id']}/events?address={typo}")
    assert (status, error["field"]) == (422, "address")


async def test_a_hundred_thousand_addresses(api: Api) -> None:
    # checksummed, so the server checks 100,000 EIP-55 checksums in the one request
    full = to_checksums([addr(i) for i in range(1, 100_001)])
    created = await api.monitor(addresses=full)
    path = f"/v1/monitors/{created['id']}"
    assert created["address_count"] == 100_000
    extra = [addr(i) for i in range(200_001, 205_001)]
    status, error = await api.call("PATCH", path, {"add_addresses": extra})
    assert (status, error["field"]) == (422, "add_addresses")  # 105,000 would be too many
    status, changed = await api.call("PATCH", path,
                                     {"remove_addresses": [a.lower() for a in full[:5000]]})
    assert (status, changed["address_count"]) == (200, 95_000)
    status, changed = await api.call("PATCH", path, {"add_addresses": extra})
    assert (status, changed["address_count"]) == (200, 100_000)
    status, got = await api.call("GET", path)
    assert set(got["addresses"]) == {a.lower() for a in full[5000:]} | set(extra)
    status, error = await api.call("POST", "/v1/monitors", {
        "chain": "ethereum", "endpoint_id": created["endpoint_id"],
        "addresses": [addr(i) for i in range(100_001)]})
    assert (status, error["field"]) == (413, "addresses")
    (stored,) = await api.service.store.list_monitors()
    assert len(stored.addresses) == 100_000 and addr(200_001) in stored.addresses


async def test_patch_enables_disables_and_changes_fields(api: Api) -> None:
    created = await api.monitor(confirmations=30, tags=["a"])
    path = f"/v1/monitors/{created['id']}"
    status, changed = await api.call("PATCH", path, {"enabled": False})
    assert (status, changed) == (200, {**created, "enabled": False})
    stored = await api.service.store.get_monitor(created["id"])
    assert stored is not None and not stored.enabled
    other_endpoint = await api.endpoint()
    status, changed = await api.call("PATCH", path, {
        "enabled": True, "direction": "out", "confirmations": None, "tags": [],
        "conditions": {"native": True}, "endpoint_id": other_endpoint,
        "add_addresses": [addr(2), addr(3)], "remove_addresses": [addr(1), addr(9)]})
    assert status == 200
    assert changed == {**created, "direction": "out", "confirmations": None,
                       "effective_confirmations": 12, "tags": [],
                       "conditions": {"native": True, "erc20": False, "erc721": False,
                                      "contracts": []},
                       "endpoint_id": other_endpoint, "address_count": 2}
    assert (await api.call("PATCH", path, {}))[1] == changed  # nothing asked, nothing done
    _, got = await api.call("GET", path)
    assert got["addresses"] == [addr(2), addr(3)]


async def test_patches_through_two_processes_on_one_redis_lose_no_address(
        tmp_path: Path, redis_keyspace: RedisKeyspace) -> None:
    """Two services sharing a Redis queue, 24 concurrent PATCHes split between them, each
    adding its own address: every one of them is in the monitor afterwards (a PATCH that
    read a monitor another process changed meanwhile reads it again)."""
    apis = []
    for name in "ab":
        listen = f"127.0.0.1:{free_port()}"
        service = Service(ServiceSection(listen=listen, api_keys=(KEY,), chains=CHAINS),
                          tmp_path / name,
                          store=RedisStore(redis_keyspace.url, prefix=redis_keyspace.prefix))
        await service.start()
        apis.append(Api(f"http://{listen}", service))
    try:
        created = await apis[0].monitor()
        path = f"/v1/monitors/{created['id']}"
        answers = await asyncio.gather(*(
            apis[i % 2].call("PATCH", path, {"add_addresses": [addr(100 + i)]})
            for i in range(24)))
        assert [status for status, _ in answers] == [200] * 24, answers
        _, got = await apis[1].call("GET", path)
        assert got["addresses"] == sorted([addr(1), *(addr(100 + i) for i in range(24))])
    finally:
        for api in apis:
            await api.service.stop()


async def test_a_patch_that_keeps_losing_the_race_is_a_409_naming_the_id(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    created = await api.monitor()

    async def always_stale(monitor: Monitor) -> bool:
        return False  # as if another process wrote the monitor after every read

    monkeypatch.setattr(api.service.store, "replace_monitor", always_stale)
    status, error = await api.call("PATCH", f"/v1/monitors/{created['id']}",
                                   {"enabled": False})
    assert status == 409 and error["field"] == "id" and "send it again" in error["error"]
    stored = await api.service.store.get_monitor(created["id"])
    assert stored is not None and stored.enabled


def transfer(monitor_id: str, tx: int, block: int, *watched: str,
             kind: str = "transfer.detected") -> tuple[NewEvent, MatchRecord]:
    tx_hash = f"0x{tx:064x}"
    data = {"monitor_id": monitor_id, "tx_hash": tx_hash, "block_number": block,
            "amount": "123456789012345678901234567890"}
    return (NewEvent(kind, data, f"ethereum/{tx_hash}/{monitor_id}/{kind}"),
            MatchRecord(monitor_id, kind, tx_hash, watched, block))


async def test_event_history_filtered_by_tx_hash_and_address(api: Api) -> None:
    monitor_id = (await api.monitor(addresses=[addr(1), CHECKSUMMED[0]]))["id"]
    watched = CHECKSUMMED[0].lower()
    steps = [transfer(monitor_id, 1, 10, addr(1)), transfer(monitor_id, 2, 11, watched),
             transfer(monitor_id, 1, 22, addr(1), kind="transfer.confirmed")]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for i, (event, match) in enumerate(steps):
        ids += [s.id for s in await api.service.store.advance(
            "ethereum", {"block": match.block_number}, [event], [match],
            now + timedelta(seconds=i))]
    path = f"/v1/monitors/{monitor_id}/events"
    status, history = await api.call("GET", path)
    assert status == 200 and [h["event_id"] for h in history] == ids[::-1]
    assert history[0] == {"event_id": ids[2], "type": "transfer.confirmed",
                          "tx_hash": f"0x{1:064x}", "block_number": 22, "addresses": [addr(1)],
                          "accepted_at": (now + timedelta(seconds=2)).isoformat(),
                          "data": steps[2][0].data}
    tx1 = f"0x{1:064X}"  # any case
    for query, expected in [(f"?tx_hash={tx1}", [ids[2], ids[0]]),
                            (f"?address={CHECKSUMMED[0]}", [ids[1]]),
                            (f"?address={watched.upper().replace('0X', '0x')}", [ids[1]]),
                            (f"?tx_hash={tx1}&address={addr(1)}&limit=1", [ids[2]]),
                            (f"?tx_hash={tx1}&address={watched}", []),
                            ("?limit=2", [ids[2], ids[1]])]:
        status, found = await api.call("GET", path + query)
        assert (status, [h["event_id"] for h in found]) == (200, expected), query
    empty = (await api.monitor())["id"]
    assert await api.call("GET", f"/v1/monitors/{empty}/events") == (200, [])


async def test_history_pages_follow_the_link_header(api: Api) -> None:
    monitor_id = (await api.monitor())["id"]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for i in range(5):
        event, match = transfer(monitor_id, 100 + i, 10 + i, addr(1))
        ids += [s.id for s in await api.service.store.advance(
            "ethereum", {"block": 10 + i}, [event], [match], now + timedelta(seconds=i))]
    url = f"{api.base}/v1/monitors/{monitor_id}/events?limit=2&address={addr(1)}"
    pages = []
    async with aiohttp.ClientSession(headers=AUTH) as http:
        while url:
            async with http.get(url) as resp:
                assert resp.status == 200
                pages.append([h["event_id"] for h in await resp.json()])
                link = resp.headers.get("Link", "")
            # a reference relative to the request, as RFC 8288 allows (right behind proxies)
            url = urljoin(url, link[1:link.index(">")]) if link else ""
    # full pages link to the next; the last full one links to an empty page
    assert pages == [ids[:-3:-1], ids[-3:-5:-1], [ids[0]]]


async def test_an_endpoint_monitors_send_to_is_not_deleted_under_them(api: Api) -> None:
    created = await api.monitor()
    path = f"/v1/endpoints/{created['endpoint_id']}"
    status, error = await api.call("DELETE", path)
    assert (status, error["field"]) == (409, "id") and created["id"] in error["error"]
    assert (await api.call("GET", path))[0] == 200
    assert (await api.call("DELETE", f"/v1/monitors/{created['id']}"))[0] == 204
    assert (await api.call("DELETE", path))[0] == 204


VALID = {"chain": "ethereum", "addresses": [addr(1)], "endpoint_id": "{endpoint}"}


def body(**changes: Any) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


def without(key: str) -> bytes:
    return json.dumps({k: v for k, v in VALID.items() if k != key}).encode()


BAD = [
    ("POST", "/v1/monitors", b"{nope", 400, None),
    ("POST", "/v1/monitors", b"[]", 422, None),
    ("POST", "/v1/monitors", without("chain"), 422, "chain"),
    ("POST", "/v1/monitors", without("addresses"), 422, "addresses"),
    ("POST", "/v1/monitors", without("endpoint_id"), 422, "endpoint_id"),
    ("POST", "/v1/monitors", body(x=1), 422, "x"),
    ("POST", "/v1/monitors", body(chain="bitcoin"), 422, "chain"),
    ("POST", "/v1/monitors", body(chain=5), 422, "chain"),
    ("POST", "/v1/monitors", body(addresses="0x" + "1" * 40), 422, "addresses"),
    ("POST", "/v1/monitors", body(addresses=[addr(1), "0x123"]), 422, "addresses[1]"),
    ("POST", "/v1/monitors", body(addresses=[addr(1), 7]), 422, "addresses[1]"),
    ("POST", "/v1/monitors", body(addresses=["1" * 42]), 422, "addresses[0]"),
    ("POST", "/v1/monitors", body(addresses=["0x" + "g" * 40]), 422, "addresses[0]"),
    ("POST", "/v1/monitors", body(addresses=[CHECKSUMMED[0].replace("a", "A", 1)]), 422,
     "addresses[0]"),
    ("POST", "/v1/monitors", body(conditions=[]), 422, "conditions"),
    ("POST", "/v1/monitors", body(conditions={}), 422, "conditions"),
    ("POST", "/v1/monitors", body(conditions={"native": False}), 422, "conditions"),
    ("POST", "/v1/monitors", body(conditions={"native": "yes"}), 422, "conditions.native"),
    ("POST", "/v1/monitors", body(conditions={"erc20": True, "x": 1}), 422, "conditions.x"),
    ("POST", "/v1/monitors", body(conditions={"erc20": True, "contracts": ["0x1"]}), 422,
     "conditions.contracts[0]"),
    ("POST", "/v1/monitors", body(conditions={"native": True, "contracts": [addr(5)]}), 422,
     "conditions.contracts"),
    ("POST", "/v1/monitors", body(direction="both"), 422, "direction"),
    ("POST", "/v1/monitors", body(confirmations=-1), 422, "confirmations"),
    ("POST", "/v1/monitors", body(confirmations=10_001), 422, "confirmations"),
    ("POST", "/v1/monitors", body(confirmations=1.5), 422, "confirmations"),
    ("POST", "/v1/monitors", body(confirmations=True), 422, "confirmations"),
    ("POST", "/v1/monitors", body(endpoint_id="ep_nope"), 422, "endpoint_id"),
    ("POST", "/v1/monitors", body(endpoint_id=12), 422, "endpoint_id"),
    ("POST", "/v1/monitors", body(tags="hot"), 422, "tags"),
    ("POST", "/v1/monitors", body(tags=["ok", ""]), 422, "tags[1]"),
    ("POST", "/v1/monitors", body(tags=["x" * 65]), 422, "tags[0]"),
    ("POST", "/v1/monitors", body(tags=[str(i) for i in range(33)]), 422, "tags"),
    ("POST", "/v1/monitors", body(enabled="no"), 422, "enabled"),
    ("GET", "/v1/monitors?nope=1", None, 422, "nope"),
    ("GET", "/v1/monitors/mon_nope", None, 404, "id"),
    ("DELETE", "/v1/monitors/mon_nope", None, 404, "id"),
    ("PATCH", "/v1/monitors/mon_nope", b'{"enabled": false}', 404, "id"),
    ("PATCH", "/v1/monitors/{monitor}", b"{nope", 400, None),
    ("PATCH", "/v1/monitors/{monitor}", b'{"enabled": "no"}', 422, "enabled"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"chain": "polygon"}', 422, "chain"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"addresses": []}', 422, "addresses"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"add_addresses": "0x1"}', 422, "add_addresses"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"add_addresses": ["0x1"]}', 422, "add_addresses[0]"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"remove_addresses": [null]}', 422,
     "remove_addresses[0]"),
    ("PATCH", "/v1/monitors/{monitor}", json.dumps(
        {"add_addresses": [addr(2)], "remove_addresses": [addr(1), addr(2).upper()[1:]]}
    ).encode(), 422, "remove_addresses[1]"),
    ("PATCH", "/v1/monitors/{monitor}", json.dumps(
        {"add_addresses": [addr(2)], "remove_addresses": [addr(2)]}).encode(), 422,
     "remove_addresses[0]"),
    ("PATCH", "/v1/monitors/{monitor}", json.dumps(
        {"add_addresses": [addr(i) for i in range(100_001)]}).encode(), 413, "add_addresses"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"conditions": {"erc721": false}}', 422,
     "conditions"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"direction": null}', 422, "direction"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"confirmations": "3"}', 422, "confirmations"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"tags": [1]}', 422, "tags[0]"),
    ("PATCH", "/v1/monitors/{monitor}", b'{"endpoint_id": "ep_nope"}', 422, "endpoint_id"),
    ("GET", "/v1/monitors/mon_nope/events", None, 404, "id"),
    ("GET", "/v1/monitors/{monitor}/events?tx_hash=0x12", None, 422, "tx_hash"),
    ("GET", "/v1/monitors/{monitor}/events?address=0x12", None, 422, "address"),
    ("GET", "/v1/monitors/{monitor}/events?limit=0", None, 422, "limit"),
    ("GET", "/v1/monitors/{monitor}/events?limit=1001", None, 422, "limit"),
    ("GET", "/v1/monitors/{monitor}/events?limit=ten", None, 422, "limit"),
    ("GET", "/v1/monitors/{monitor}/events?since=1", None, 422, "since"),
    ("GET", "/v1/monitors/{monitor}/events?before=12", None, 422, "before"),
    ("GET", "/v1/monitors/{monitor}/events?before=evt_" + "0" * 16, None, 422, "before"),
    ("GET", "/v1/monitors/mon_nope/events?before=evt_" + "0" * 16, None, 404, "id"),
    ("GET", "/v1/monitors/{monitor}/events?before=evt_" + "f" * 16, None, 422, "before"),
    ("GET", "/v1/monitors/{monitor}/events?before=evt_" + "f" * 32, None, 422, "before"),
    ("POST", "/v1/monitors", body(tags=["\udc80"]), 400, "tags[0]"),
    ("POST", "/v1/monitors", b'{"addresses": ' + b"[" * 2000 + b"]" * 2000 + b"}", 422,
     "addresses"),
    ("DELETE", "/v1/endpoints/{endpoint}", None, 409, "id"),
]


async def test_bad_input_is_a_json_error_naming_the_field(api: Api) -> None:
    created = await api.monitor()
    names = {"{endpoint}": created["endpoint_id"], "{monitor}": created["id"]}
    for method, path, raw, status, field_name in BAD:
        for placeholder, value in names.items():
            path = path.replace(placeholder, value)
            raw = raw.replace(placeholder.encode(), value.encode()) if raw else raw
        got, answer = await api.call(method, path, raw=raw)
        assert (got, answer["field"]) == (status, field_name), (method, path, answer)
        assert answer["error"] and "Traceback" not in answer["error"]
    _, unchanged = await api.call("GET", f"/v1/monitors/{created['id']}")
    assert unchanged == {**created, "addresses": [addr(1)]}  # no bad request changed it


async def test_every_monitor_route_needs_the_key(api: Api) -> None:
    monitor_id = (await api.monitor())["id"]
    routes = [("POST", "/v1/monitors"), ("GET", "/v1/monitors"),
              ("GET", f"/v1/monitors/{monitor_id}"), ("PATCH", f"/v1/monitors/{monitor_id}"),
              ("DELETE", f"/v1/monitors/{monitor_id}"),
              ("GET", f"/v1/monitors/{monitor_id}/events")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            status, answer = await api.call(method, path, raw=b"{}", headers=headers)
            assert (status, answer["field"]) == (401, "Authorization"), (method, path)
    assert (await api.call("GET", f"/v1/monitors/{monitor_id}"))[0] == 200  # still there
