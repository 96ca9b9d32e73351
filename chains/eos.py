"""EOS/Antelope nodeos client: the chain API's get_info, read into a typed, UTC-aware model.

nodeos is REST, not JSON-RPC: POST /v1/chain/get_info (an empty body is accepted), and
errors come as HTTP 4xx/5xx with {"code", "message", "error": {"code", "name", "what"}}.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from chains import MalformedResponse, RpcError
from chains.jsonrpc import (
    DEFAULT_MAX_RESPONSE_BYTES,
    JsonRpcTransport,
    integer,
    mapping,
    shown,
    tag,
    text,
)

GET_INFO = "/v1/chain/get_info"


@dataclass(frozen=True, slots=True)
class EosInfo:
    head_block_num: int
    last_irreversible_block_num: int
    head_block_time: datetime  # aware, UTC
    chain_id: str
    server_version_string: str  # "" when the node does not say

    @property
    def lib_lag(self) -> int:
        return self.head_block_num - self.last_irreversible_block_num


def parse_block_time(value: str, what: str) -> datetime:
    """nodeos writes "2022-10-10T13:34:03.500" with no zone; the time is UTC all the same."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedResponse(f"{what}: not an ISO time: {shown(value)}") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_info(answer: object, what: str = "get_info") -> EosInfo:
    body = mapping(answer, what)
    _raise_error(body, what)
    version = body.get("server_version_string")
    return EosInfo(
        head_block_num=integer(body, "head_block_num", what),
        last_irreversible_block_num=integer(body, "last_irreversible_block_num", what),
        head_block_time=parse_block_time(text(body, "head_block_time", what),
                                         f"{what}: head_block_time"),
        chain_id=text(body, "chain_id", what),
        server_version_string=version if isinstance(version, str) else "",
    )


def _raise_error(body: Mapping[str, Any], what: str) -> None:
    error = body.get("error")
    if not isinstance(error, Mapping):
        return
    code = error.get("code")
    # "name" is the stable identifier (unknown_block_exception); "what" the human phrase
    words = [str(error[k]) for k in ("name", "what") if isinstance(error.get(k), str)]
    message = ": ".join(words) or str(body.get("message", "unspecified error"))
    raise tag(RpcError(code if isinstance(code, int) else None, message), what)


class EosClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float, *,
                 headers: Mapping[str, str] | None = None,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.transport = JsonRpcTransport(session, url, timeout, headers=headers,
                                          max_response_bytes=max_response_bytes)

    async def get_info(self) -> EosInfo:
        return parse_info(await self.transport.post(None, method="get_info", path=GET_INFO))
