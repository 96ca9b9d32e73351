"""Node answers as the nodes' own documentation gives them: the nodeos and rippled samples in
tests/fixtures, adjusted per test, and a Bitcoin Core JSON-RPC fake for the fake node server.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.support.chain_nodes import Canned, Seen, json_answer, load_fixture


def nodeos_time(when: datetime) -> str:
    """nodeos's format: UTC, milliseconds, no zone suffix."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def eos_info(now: datetime, head_age: float = 0.5, sample: str = "eos_get_info_mainnet.json",
             **changes: Any) -> dict[str, Any]:
    info = load_fixture(sample)
    info["head_block_time"] = nodeos_time(now - timedelta(seconds=head_age))
    info.update(changes)
    return info


def xrpl_info(drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    """The documented server_info answer with `result.info` fields changed or dropped."""
    answer = load_fixture("xrpl_server_info.json")
    info = answer["result"]["info"]
    info.update(changes)
    for key in drop:
        info.pop(key, None)
    return answer


def nodeos_error(code: int, name: str, what: str, status: int = 500) -> Canned:
    """nodeos's error answer: the HTTP status repeated in the body, the chain error inside."""
    return json_answer({"code": status, "message": "Internal Service Error", "error": {
        "code": code, "name": name, "what": what,
        "details": [{"message": what, "file": "chain_plugin.cpp", "line_number": 1,
                     "method": "get_info"}]}}, status)


def rippled_error(name: str, code: int, message: str) -> dict[str, Any]:
    """rippled's error answer: HTTP 200, named in result.error, with the request echoed."""
    return {"result": {"error": name, "error_code": code, "error_message": message,
                       "request": {"command": "server_info"}, "status": "error"}}


@dataclass
class BitcoinCoreFake:
    """Bitcoin Core's JSON-RPC as its RPC reference documents it; fields tests may change."""

    user: str = "rpcuser"
    password: str = "rpcpass"
    blocks: int = 870_000
    headers: int = 870_000
    initial_block_download: bool = False
    verification_progress: float = 0.9999987
    connections: int = 10
    error: tuple[int, str] | None = None  # answer every call with this RPC error

    def expected_auth(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {token}"

    async def __call__(self, seen: Seen) -> Canned:
        if seen.headers.get("Authorization") != self.expected_auth():
            # bitcoind: a bare 401 with no body, whatever the request
            return Canned(b"", 401, "text/html", {"WWW-Authenticate": 'Basic realm="jsonrpc"'})
        request = seen.body if isinstance(seen.body, dict) else {}
        request_id, method = request.get("id"), request.get("method")
        if self.error is not None:
            code, message = self.error
            return self._error(request_id, code, message)
        if method == "getblockchaininfo":
            return self._result(request_id, self._blockchain_info())
        if method == "getnetworkinfo":
            return self._result(request_id, {
                "version": 270000, "subversion": "/Satoshi:27.0.0/", "protocolversion": 70016,
                "connections": self.connections, "connections_in": 0,
                "connections_out": self.connections, "networkactive": True,
                "relayfee": 0.00001, "warnings": ""})
        return self._error(request_id, -32601, "Method not found")

    def _blockchain_info(self) -> dict[str, Any]:
        return {
            "chain": "main", "blocks": self.blocks, "headers": self.headers,
            "bestblockhash": "00000000000000000001a0b0c0d0e0f00000000000000000000000000000000a",
            "difficulty": 92_671_576_265_161.06, "time": 1_730_000_000,
            "mediantime": 1_729_998_000,
            "verificationprogress": self.verification_progress,
            "initialblockdownload": self.initial_block_download,
            "chainwork": "0000000000000000000000000000000000000000955f3ee5f1b5d6a9c4d8e0a2",
            "size_on_disk": 683_000_000_000, "pruned": False, "warnings": ""}

    @staticmethod
    def _result(request_id: Any, result: Any) -> Canned:
        return json_answer({"result": result, "error": None, "id": request_id})

    @staticmethod
    def _error(request_id: Any, code: int, message: str) -> Canned:
        # JSON-RPC 1.0 mode: HTTP 404 for an unknown method, 500 for every other error
        status = 404 if code == -32601 else 500
        return json_answer({"result": None, "error": {"code": code, "message": message},
                            "id": request_id}, status)
