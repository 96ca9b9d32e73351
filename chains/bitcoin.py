"""Bitcoin Core client: getblockchaininfo and getnetworkinfo over JSON-RPC 1.0 with basic auth.

Bitcoin Core answers RPC errors with HTTP 500 (404 for an unknown method) and a JSON body, and
a missing or wrong password with a bare 401; the transport tells the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from chains import MalformedResponse
from chains.jsonrpc import (
    DEFAULT_MAX_RESPONSE_BYTES,
    JsonRpcTransport,
    flag,
    integer,
    mapping,
    number,
    shown,
    text,
)


@dataclass(frozen=True, slots=True)
class BlockchainInfo:
    chain: str  # "main", "test", "signet", "regtest"
    blocks: int
    headers: int
    initial_block_download: bool
    verification_progress: float
    time: int | None  # unix time of the tip, reported since v25

    @property
    def lag(self) -> int:
        return self.headers - self.blocks


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    connections: int


def parse_blockchain_info(answer: object, what: str = "getblockchaininfo") -> BlockchainInfo:
    body = mapping(answer, what)
    time = body.get("time")
    if time is not None and (not isinstance(time, int) or isinstance(time, bool)):
        raise MalformedResponse(f"{what}: time should be an integer, got {shown(time)}")
    return BlockchainInfo(
        chain=text(body, "chain", what),
        blocks=integer(body, "blocks", what),
        headers=integer(body, "headers", what),
        initial_block_download=flag(body, "initialblockdownload", what),
        verification_progress=number(body, "verificationprogress", what),
        time=time,
    )


def parse_network_info(answer: object, what: str = "getnetworkinfo") -> NetworkInfo:
    return NetworkInfo(connections=integer(mapping(answer, what), "connections", what))


class BitcoinClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float, *,
                 user: str = "", password: str = "",
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        # no user: rely on URL userinfo if any (the transport reads it), else no auth at all
        auth = (user, password) if user else None
        self.transport = JsonRpcTransport(session, url, timeout, auth=auth, version="1.0",
                                          max_response_bytes=max_response_bytes)

    async def blockchain_info(self) -> BlockchainInfo:
        return parse_blockchain_info(await self.transport.call("getblockchaininfo"))

    async def network_info(self) -> NetworkInfo:
        return parse_network_info(await self.transport.call("getnetworkinfo"))
