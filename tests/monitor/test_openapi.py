"""The monitor's /openapi.json (issue 12, item 9): a structurally valid OpenAPI 3 document that
describes exactly the routes the app registers, with the security scheme and input limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

from core import signing
from monitor.exporters import new_registry
from monitor.runtime import UptimeHistory
from monitor.web import AlertsApi, MonitorApi
from monitor.web.bodies import MAX_BODY, MAX_DEPTH
from monitor.web.openapi import OPERATIONS, registered
from probes.webhook_canary import CanaryInbox
from tests.support.monitor_app import running_monitor

pytestmark = pytest.mark.timeout(60)
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def check_openapi(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """The structural rules of OpenAPI 3.1 our document must meet; its (path, method)s."""
    assert re.fullmatch(r"3\.\d+\.\d+", spec["openapi"])
    assert isinstance(spec["info"]["title"], str) and isinstance(spec["info"]["version"], str)
    schemes = spec["components"]["securitySchemes"]
    for ref in refs(spec):
        resolve(spec, ref)
    ops = set()
    for path, item in spec["paths"].items():
        assert path.startswith("/"), path
        params = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            assert method in METHODS, (path, method)
            ops.add((path, method))
            assert op["responses"], (path, method)
            for status, response in op["responses"].items():
                assert status == "default" or re.fullmatch(r"[1-5][0-9X]{2}", status)
                if "$ref" not in response:
                    assert isinstance(response["description"], str), (path, status)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == params, (path, method)
            for p in op.get("parameters", []):
                assert p["in"] in ("path", "query", "header", "cookie")
                assert p["in"] != "path" or p["required"] is True
            for requirement in op.get("security", []):
                assert set(requirement) <= set(schemes), (path, method)
            if "requestBody" in op:
                assert op["requestBody"]["content"], (path, method)
    return ops


def full_app(tmp_path: Path) -> web.Application:
    """The monitor's app with every optional part mounted (alerting, the canary sink)."""
    registry, _ = new_registry([])
    # registering the alerting routes only binds AlertsApi's methods
    alerts = AlertsApi(cast(Any, None))
    return MonitorApi([], registry, UptimeHistory(tmp_path / "h.sqlite3"), ["k"],
                      CanaryInbox("http://127.0.0.1:1/canary", signing.new_secret()),
                      alerts.routes, reload=no_reload).app()


async def no_reload() -> list[str]:
    return []


def test_every_route_the_app_registers_is_described(tmp_path: Path) -> None:
    served = registered(full_app(tmp_path).router)
    assert served <= set(OPERATIONS), served - set(OPERATIONS)


async def test_openapi_json_is_valid_and_lists_exactly_the_registered_routes(
        tmp_path: Path) -> None:
    async with running_monitor(tmp_path) as m, aiohttp.ClientSession() as http, \
            http.get(f"http://{m.config.monitor.listen}/openapi.json") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        spec = await resp.json()
    ops = check_openapi(spec)
    assert ops == registered(full_app(tmp_path).router)
    # CONTRACT.md's monitor table, as far as those routes exist
    assert ops >= {("/metrics", "get"), ("/healthz", "get"), ("/api/v1/targets", "get"),
                   ("/api/v1/alerts", "get"), ("/api/v1/notifications", "get"),
                   ("/api/v1/silences", "get"), ("/api/v1/silences", "post"),
                   ("/api/v1/silences/{id}", "delete"), ("/api/v1/alertmanager", "post"),
                   ("/canary/{key}", "post"), ("/", "get"), ("/openapi.json", "get")}
    for path, method in ops:  # POST and DELETE need the key, the canary sink excepted
        secured = "security" in spec["paths"][path][method]
        assert secured == (method in ("post", "delete") and path != "/canary/{key}"), path
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http",
                                                               "scheme": "bearer"}
    limits = spec["paths"]["/api/v1/silences"]["post"]["description"]
    assert f"{MAX_BODY // 1024} KiB" in limits and f"{MAX_DEPTH} deep" in limits


async def test_a_monitor_without_alerting_or_canary_describes_only_what_it_serves(
        tmp_path: Path) -> None:
    registry, _ = new_registry([])
    app = MonitorApi([], registry, UptimeHistory(tmp_path / "h.sqlite3"), ["k"]).app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/openapi.json") as resp:
            spec = await resp.json()
    finally:
        await runner.cleanup()
    assert check_openapi(spec) == registered(app.router)
    assert "/canary/{key}" not in spec["paths"] and "/api/v1/alerts" not in spec["paths"]
