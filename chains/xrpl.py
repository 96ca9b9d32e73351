"""XRP Ledger rippled client: server_info over rippled's JSON-RPC dialect.

rippled wants {"method": ..., "params": [{...}]} and answers {"result": {..., "status":
"success" | "error"}}, with errors named ("noNetwork") in `result.error`, not a JSON-RPC object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from chains import MalformedResponse, RpcError
from chains.jsonrpc import (
    DEFAULT_MAX_RESPONSE_BYTES,
    JsonRpcTransport,
    flag,
    integer,
    mapping,
    number,
    shown,
    tag,
    text,
)


@dataclass(frozen=True, slots=True)
class ValidatedLedger:
    seq: int
    age: int  # seconds since it closed


@dataclass(frozen=True, slots=True)
class XrplServerInfo:
    server_state: str
    peers: int
    load_factor: float
    validated_ledger: ValidatedLedger | None  # None while the server has none
    amendment_blocked: bool
    build_version: str  # informational: "" when absent
    complete_ledgers: str  # "32570-82521761", several ranges, or "empty"


def parse_server_info(answer: object, what: str = "server_info") -> XrplServerInfo:
    result = mapping(mapping(answer, what).get("result"), f"{what}: result")
    _raise_error(result, what)
    info = mapping(result.get("info"), f"{what}: info")
    ledger = info.get("validated_ledger")
    validated = None
    if ledger is not None:
        ledger = mapping(ledger, f"{what}: validated_ledger")
        validated = ValidatedLedger(seq=integer(ledger, "seq", f"{what}: validated_ledger"),
                                    age=integer(ledger, "age", f"{what}: validated_ledger"))
    # rippled only includes amendment_blocked once it is true
    blocked = flag(info, "amendment_blocked", what) if "amendment_blocked" in info else False
    return XrplServerInfo(
        server_state=text(info, "server_state", what),
        peers=integer(info, "peers", what),
        load_factor=number(info, "load_factor", what),
        validated_ledger=validated,
        amendment_blocked=blocked,
        build_version=_optional_text(info, "build_version"),
        complete_ledgers=_optional_text(info, "complete_ledgers"),
    )


def _raise_error(result: Mapping[str, Any], what: str) -> None:
    status = result.get("status")
    if status == "success":
        return
    if status != "error":
        raise MalformedResponse(f"{what}: status should be success or error, got {shown(status)}")
    name = result.get("error")
    detail = result.get("error_message")
    message = str(name) if isinstance(name, str) else "unnamed error"
    if isinstance(detail, str) and detail:
        message = f"{message} ({detail})"
    code = result.get("error_code")
    raise tag(RpcError(code if isinstance(code, int) else None, message), what)


def _optional_text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


class XrplClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float, *,
                 headers: Mapping[str, str] | None = None,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.transport = JsonRpcTransport(session, url, timeout, headers=headers,
                                          max_response_bytes=max_response_bytes)

    async def server_info(self) -> XrplServerInfo:
        payload = {"method": "server_info", "params": [{}]}
        return parse_server_info(await self.transport.post(payload, method="server_info"))
