"""A fault-injecting JSON-RPC proxy in front of a real node (the ganache fixture): it forwards
single calls and batches, and misbehaves as the test switches it to, the way load-balanced
node pools and rate-limited providers do (issue 13). `stats` counts what it did.

Modes (each on until `clear()`, several may be on at once):
- `empty_logs(n)`: eth_getLogs answers `[]` for the first n asks of each block hash;
- `lagging(...)`: each request goes, by a seeded coin, to the node or to a view 5 blocks
  behind (head - 5, no blocks above it, no logs or receipts of them); `fresh_head=True`
  takes the head from the node and everything else from the lagging view;
- `stale_replies(...)`: a single call is answered with the previous such call's reply (its
  id and result) when that call asked something else (asked again, the same question gets
  its own answer, so a client that refuses the stale one can go on), and
  `refuse_batches()` makes the client send single calls;
- `rate_limit_batches(k)`: the next k batches get HTTP 429 with one error object;
- `oversize(method, k)`: the next k answers to a request holding `method` are a huge
  chunked body made on the fly; `oversized_written` says how much went out before the
  client hung up;
- `forge_parents(k)`: the head block, while it is the head, carries a forged parentHash, for
  the first k distinct heads;
- `plain(kinds, every)`: RPC error objects, HTML 502s, hangs (until `clear()` or
  `hang_max`) and invalid JSON, in turn, for every `every`-th request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.web import serve

RATE_LIMITED = {"jsonrpc": "2.0", "id": None,
                "error": {"code": -32005, "message": "rate limit exceeded"}}
BATCH_REFUSED = {"jsonrpc": "2.0", "id": None,
                 "error": {"code": -32600, "message": "batch requests are not supported"}}
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
PLAIN_KINDS = ("rpc_error", "html_502", "hang", "invalid_json")
OVERSIZE = 64 * 1024 * 1024
CHUNK = 64 * 1024
FORGED = "0x" + "f0" * 32


def _int(value: Any) -> int | None:
    return int(value, 16) if isinstance(value, str) and value.startswith("0x") else None


@dataclass
class Lagging:
    behind: int
    share: float  # of the requests sent to the lagging backend
    fresh_head: bool  # eth_blockNumber from the fresh backend, the rest from the lagging one


@dataclass
class Faults:
    empty_logs: int = 0
    empty_asks: Counter[str] = field(default_factory=Counter)  # block hash → asks so far
    lagging: Lagging | None = None
    stale_methods: frozenset[str] | None = None  # None: off; empty: every method
    refuse_batches: bool = False
    rate_limited: int = 0  # batches still to refuse with 429
    oversize_method: str = ""
    oversize_left: int = 0
    oversize_bytes: int = OVERSIZE
    forge_left: int = 0  # distinct head blocks still to forge
    plain_kinds: tuple[str, ...] = ()
    plain_every: int = 0


class FaultProxy:
    def __init__(self, upstream: str, seed: int = 13, hang_max: float = 10.0) -> None:
        self.upstream = upstream
        self.url = ""
        self.rng = random.Random(seed)
        self.hang_max = hang_max
        self.stats: Counter[str] = Counter()
        self.oversized_written: list[int] = []  # bytes sent of each oversized answer
        self.faults = Faults()
        self._forged: set[str] = set()  # hashes of the head blocks answered forged
        self._previous: dict[str, tuple[str, Any]] = {}  # method → (params, reply) last asked
        self._numbers: dict[str, int | None] = {}  # block hash → number (None: unknown)
        self._release = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    # --- switching modes -----------------------------------------------------------------

    def clear(self) -> None:
        """Every fault off; hanging requests are released."""
        self.faults = Faults()
        self._forged.clear()
        self._release.set()
        self._release = asyncio.Event()

    def empty_logs(self, asks: int) -> None:
        self.faults.empty_logs = asks

    def lagging(self, behind: int = 5, share: float = 0.5, fresh_head: bool = False) -> None:
        self.faults.lagging = Lagging(behind, share, fresh_head)

    def stale_replies(self, methods: Sequence[str] = ()) -> None:
        """Single calls of `methods` (every method when empty) get the previous one's reply."""
        self.faults.stale_methods = frozenset(methods)

    def refuse_batches(self) -> None:
        self.faults.refuse_batches = True

    def rate_limit_batches(self, count: int) -> None:
        self.faults.rate_limited = count

    def oversize(self, method: str, count: int, size: int = OVERSIZE) -> None:
        self.faults.oversize_method, self.faults.oversize_left = method, count
        self.faults.oversize_bytes = size

    def forge_parents(self, count: int) -> None:
        self.faults.forge_left = count

    def plain(self, kinds: Sequence[str] = PLAIN_KINDS, every: int = 3) -> None:
        unknown = set(kinds) - set(PLAIN_KINDS)
        assert not unknown and every > 0, f"unknown plain faults {unknown}"
        self.faults.plain_kinds, self.faults.plain_every = tuple(kinds), every
        self.stats["plain_seen"] = 0

    # --- the server ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FaultProxy]:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            self._session = session
            async with serve(app) as base:
                self.url = base
                try:
                    yield self
                finally:
                    self._release.set()  # hanging answers end before the server stops
            self._session = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.stats["requests"] += 1
        try:
            payload = json.loads(raw)
        except ValueError:
            return await self._pass_through(raw)
        batch = isinstance(payload, list)
        calls: list[dict[str, Any]] = payload if batch else [payload]
        f = self.faults
        if f.plain_kinds:
            self.stats["plain_seen"] += 1
            turn, left = divmod(self.stats["plain_seen"], f.plain_every)
            if not left:
                kind = f.plain_kinds[(turn - 1) % len(f.plain_kinds)]
                return await self._plain(kind, calls, batch)
        if batch:
            if f.refuse_batches:
                self._count("batch_refused")
                return web.json_response(BATCH_REFUSED)
            if f.rate_limited > 0:
                f.rate_limited -= 1
                self._count("rate_limited")
                return web.json_response(RATE_LIMITED, status=429, headers={"Retry-After": "0"})
            self.stats["batches"] += 1
            if self.stats["rate_limited"]:
                self.stats["batches_after_rate_limit"] += 1
        else:
            self.stats["singles"] += 1
        if f.oversize_left > 0 and any(c.get("method") == f.oversize_method for c in calls):
            f.oversize_left -= 1
            return await self._oversized(request, f.oversize_bytes, calls[0].get("id"), batch)
        replies = await self._answer(calls)
        if not batch and f.stale_methods is not None and (
                not f.stale_methods or calls[0].get("method") in f.stale_methods):
            method = str(calls[0].get("method"))
            asked = json.dumps(calls[0].get("params"), sort_keys=True)
            fresh, previous = replies[0], self._previous.get(method)
            self._previous[method] = (asked, fresh)
            if previous is not None and previous[0] != asked:
                self._count("stale_reply")
                replies = [previous[1]]
        return web.json_response(replies if batch else replies[0])

    def _count(self, what: str) -> None:
        self.stats[what] += 1
        self.stats["faults"] += 1

    async def _upstream(self, payload: Any) -> Any:
        assert self._session is not None
        async with self._session.post(self.upstream, json=payload) as resp:
            return await resp.json(content_type=None)

    async def _pass_through(self, raw: bytes) -> web.Response:
        assert self._session is not None
        async with self._session.post(self.upstream, data=raw,
                                      headers={"Content-Type": "application/json"}) as resp:
            return web.Response(body=await resp.read(), status=resp.status,
                                content_type="application/json")

    # --- answers ---------------------------------------------------------------------------

    async def _answer(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The node's replies to `calls`, in order, then changed as the modes say."""
        f = self.faults
        head = None
        if f.lagging is not None or f.forge_left > 0 or self._forged:
            head = _int(await self._upstream_call("eth_blockNumber", []))
        lagging = f.lagging is not None and self.rng.random() < f.lagging.share
        calls = [self._rewrite_latest(c, head) for c in calls] if head is not None else calls
        got = await self._upstream(calls)
        by_id = {json.dumps(r.get("id")): r for r in got} if isinstance(got, list) else {}
        replies = [by_id.get(json.dumps(c.get("id")), _error(c, -32603, "no reply"))
                   for c in calls]
        out = []
        for call, reply in zip(calls, replies, strict=True):
            if "result" in reply:
                reply = await self._change(call, reply, head, lagging)
            out.append(reply)
        return out

    async def _upstream_call(self, method: str, params: list[Any]) -> Any:
        answer = await self._upstream({"jsonrpc": "2.0", "id": 0, "method": method,
                                       "params": params})
        return answer.get("result")

    def _rewrite_latest(self, call: dict[str, Any], head: int | None) -> dict[str, Any]:
        """"latest" in the lagging view is the lagging head; elsewhere the node's head, read
        once for this request."""
        params = call.get("params")
        if (call.get("method") != "eth_getBlockByNumber" or not isinstance(params, list)
                or not params or params[0] != "latest" or head is None):
            return call
        return {**call, "params": [hex(head), *params[1:]]}

    async def _change(self, call: dict[str, Any], reply: dict[str, Any], head: int | None,
                      lagging: bool) -> dict[str, Any]:
        method, params, result = call.get("method"), call.get("params") or [], reply["result"]
        f = self.faults
        behind = f.lagging.behind if f.lagging is not None else 0
        lag_view = lagging or (f.lagging is not None and f.lagging.fresh_head)
        if method == "eth_blockNumber":
            if lagging and head is not None and not (f.lagging and f.lagging.fresh_head):
                self._count("lagging_head")
                return {**reply, "result": hex(max(0, head - behind))}
        elif method == "eth_getBlockByNumber" and isinstance(result, dict):
            number = _int(result.get("number"))
            if lag_view and head is not None and number is not None and number > head - behind:
                self._count("lagging_block")
                return {**reply, "result": None}
            if head is not None and number == head and self._forge(result):
                self._count("forged_parent")
                return {**reply, "result": {**result, "parentHash": FORGED}}
        elif method == "eth_getLogs" and isinstance(result, list) and params:
            query = params[0] if isinstance(params[0], dict) else {}
            block_hash = query.get("blockHash")
            if isinstance(block_hash, str):
                asks = f.empty_asks[block_hash]  # since the mode was switched on
                if asks < f.empty_logs:
                    f.empty_asks[block_hash] += 1
                    if result:
                        self._count("empty_logs")
                    return {**reply, "result": []}
                if lag_view and head is not None:
                    number = await self._number_of(block_hash)
                    if number is not None and number > head - behind:
                        if result:
                            self._count("lagging_logs")
                        return {**reply, "result": []}
        elif method == "eth_getTransactionReceipt" and isinstance(result, dict):
            number = _int(result.get("blockNumber"))
            if lag_view and head is not None and number is not None and number > head - behind:
                self._count("lagging_receipt")
                return {**reply, "result": None}
        return reply

    def _forge(self, block: dict[str, Any]) -> bool:
        block_hash = str(block.get("hash"))
        if block_hash in self._forged:
            return True
        if self.faults.forge_left > 0:
            self.faults.forge_left -= 1
            self._forged.add(block_hash)
            return True
        return False

    async def _number_of(self, block_hash: str) -> int | None:
        if block_hash not in self._numbers:
            block = await self._upstream_call("eth_getBlockByHash", [block_hash, False])
            number = _int(block.get("number")) if isinstance(block, dict) else None
            if number is None:
                return None  # not cached: the block may come later
            self._numbers[block_hash] = number
        return self._numbers[block_hash]

    async def _plain(self, kind: str, calls: list[dict[str, Any]],
                     batch: bool) -> web.Response:
        self._count(kind)
        if kind == "rpc_error":
            errors = [_error(c, -32000, "header not found") for c in calls]
            return web.json_response(errors if batch else errors[0])
        if kind == "html_502":
            return web.Response(status=502, text=HTML_502, content_type="text/html")
        if kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.hang_max)
            return web.Response(status=504, text="gateway timeout", content_type="text/plain")
        return web.Response(text='{"jsonrpc": "2.0", "id": 1, "result": [{"blockHa',
                            content_type="application/json")

    async def _oversized(self, request: web.Request, size: int, request_id: Any,
                         batch: bool) -> web.StreamResponse:
        """A JSON answer of `size` bytes shaped like the request's (a batch gets a list),
        one huge result written chunk by chunk, never held whole; how much went out before
        the client hung up is recorded."""
        self._count("oversized")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        written = 0
        try:
            await resp.prepare(request)
            reply = json.dumps({"jsonrpc": "2.0", "id": request_id, "result": ""})
            opening = (("[" if batch else "") + reply[:-2] + "0x").encode()  # `..."result": "0x`
            await resp.write(opening)
            written += len(opening)
            chunk = b"0" * CHUNK
            while written < size:
                await resp.write(chunk)
                written += len(chunk)
            await resp.write(b'"}]' if batch else b'"}')
            await resp.write_eof()
        except ConnectionError:
            pass  # the client hung up: what a size limit does
        finally:
            self.oversized_written.append(written)
        return resp


def _error(call: dict[str, Any], code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call.get("id"), "error": {"code": code, "message": message}}
