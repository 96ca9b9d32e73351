"""The one seam between the chain clients and the network: JSON over HTTP POST, plus the
readers that check an answer's fields. Every error a client can see is translated here into
the `chains` tree; messages start with the RPC method and never hold credentials or a body.
An answer is read only up to `max_response_bytes`: a node or proxy sending more (a huge block,
an endless stream) is cut off while it is read, so it cannot fill the process's memory.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from chains import ChainError, MalformedResponse, RateLimited, RpcError, TransportError

Params = Sequence[Any] | Mapping[str, Any]
E = TypeVar("E", bound=ChainError)
SNIPPET = 60  # characters of a bad body worth showing: enough to recognise HTML or a proxy
# A few MB above the largest Ethereum block answer with full transactions; a follower whose
# batch is refused for it halves its span until one block fits.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_RETRY_AFTER = 300.0  # seconds: a Retry-After beyond this is a provider's mistake or a ban
LIMIT_EXCEEDED = -32005  # EIP-1474 "limit exceeded"
_RATE_LIMIT_WORDS = re.compile(r"rate[ _-]?limit|too many requests", re.IGNORECASE)


class NotHttp(TransportError):
    """The peer answered, but not in HTTP (a p2p or ssh port, say). Its kind stays "connect",
    one of the documented kinds; the subclass lets a probe report it as a protocol failure."""

    def __init__(self, message: str) -> None:
        super().__init__("connect", message)


class BatchUnsupported(RpcError):
    """The node answered a batch with one error object: send the calls one by one instead.
    A rate limit answered that way is RateLimited instead, never this."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer inside a batch: a result, or the error the node gave for that call."""

    method: str
    result: Any = None
    error: RpcError | None = None

    def value(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def basic_auth(user: str, password: str) -> str:
    """The Authorization header value; built here because aiohttp's helpers for it differ
    between the versions we support (BasicAuth is deprecated from 3.14)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def snippet(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return repr(text if len(text) <= SNIPPET else text[:SNIPPET] + "…")


def shown(value: object) -> str:
    """A decoded JSON value as the node sent it, shortened for a message."""
    text = json.dumps(value, default=str)
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "…"


def tag(exc: E, method: str) -> E:
    """Prefix the message with the method so a probe's one-line detail says what failed;
    attributes such as `RpcError.message` keep the node's own words."""
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{method}: {exc.args[0]}", *exc.args[1:])
    return exc


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds, clamped to 0..MAX_RETRY_AFTER; None when absent or
    not a number of seconds (the HTTP-date form is not worth a clock comparison here)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER) if math.isfinite(seconds) else None


def is_rate_limit(error: RpcError) -> bool:
    """An error object that asks us to slow down rather than saying the call is wrong."""
    return error.code == LIMIT_EXCEEDED or bool(_RATE_LIMIT_WORDS.search(error.message))


def rate_limited(error: RpcError, what: str) -> RateLimited:
    return RateLimited(f"{what}: rate limited: RPC error {error.code}: {error.message}")


def rpc_error(obj: object, method: str) -> RpcError:
    """A JSON-RPC error object as an RpcError; shape problems become part of the message."""
    if not isinstance(obj, Mapping):
        raise MalformedResponse(f"{method}: error is not an object: {shown(obj)}")
    code, message = obj.get("code"), obj.get("message")
    return RpcError(code if isinstance(code, int) and not isinstance(code, bool) else None,
                    message if isinstance(message, str) else shown(obj))


class JsonRpcTransport:
    """POSTs JSON to one node URL with a per-request timeout; the session is the caller's.

    Credentials may come as `auth` or as URL userinfo; either way they are sent as basic auth
    and kept out of every message, which name the node by host and port only. An answer larger
    than `max_response_bytes` is a TransportError of kind "too_large".
    """

    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float, *,
                 auth: tuple[str, str] | None = None,
                 headers: Mapping[str, str] | None = None, version: str = "2.0",
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        parsed = URL(url)
        if auth is None and parsed.user is not None:
            auth = (parsed.user, parsed.password or "")
        # the userinfo leaves the URL so no error aiohttp raises can carry it; `auth` wins
        self._url = parsed.with_user(None) if parsed.user is not None else parsed
        # providers put API keys in the path or query: messages name only host and port
        self.where = f"{self._url.host}:{self._url.port}"
        self._session = session
        self._limit = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if auth is not None:
            self._headers["Authorization"] = basic_auth(*auth)
        self._version = version
        self._ids = itertools.count(1)
        self.max_response_bytes = max_response_bytes

    async def post(self, payload: Any, *, method: str = "", path: str = "") -> Any:
        """Send `payload` (None: an empty body) and return the decoded JSON answer.

        A 4xx/5xx answer is returned when it carries a JSON error envelope (Bitcoin Core
        and nodeos report RPC errors that way); otherwise it is a TransportError. HTTP 429 is
        RateLimited whatever its body.
        """
        what = method or path or "request"
        url = self._url.joinpath(path.lstrip("/")) if path else self._url
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            async with self._session.post(url, data=data, headers=self._headers,
                                          timeout=self._timeout) as resp:
                status = resp.status
                if status == 429:  # the body is not read: it may be anything, of any size
                    raise RateLimited(f"{what}: HTTP 429 (rate limited) from {self.where}",
                                      retry_after(resp.headers.get("Retry-After")))
                body = await self._read(resp, what)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._transport_error(exc, what) from exc
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            if status >= 400:
                raise self._status_error(status, what) from exc
            raise MalformedResponse(f"{what}: answer is not JSON: {snippet(body)}") from exc
        if status >= 400 and not _is_error_envelope(decoded):
            raise self._status_error(status, what)
        return decoded

    async def _read(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        """The body, refused as soon as it passes the limit; a refused answer's connection is
        closed, not returned to the pool with the rest of the answer still coming."""
        limit = self.max_response_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            resp.close()
            raise self._too_large(what)
        if declared is not None and resp.headers.get("Content-Encoding", "identity") == "identity":
            return await resp.read()  # the common case: one read of a known, allowed size
        # chunked, close-delimited or compressed (a small gzip can inflate to gigabytes):
        # count what arrives, decoded; chunks are joined once at the end
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > limit:
                resp.close()
                raise self._too_large(what)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, what: str) -> TransportError:
        return TransportError("too_large", f"{what}: answer larger than "
                                           f"{self.max_response_bytes} bytes from {self.where}")

    async def call(self, method: str, params: Params = ()) -> Any:
        """One JSON-RPC call; its `result`, or RpcError for the node's error object.

        The answer must carry the request's id ("7" for 7 is fine: proxies echo ids as
        strings); another id is a stale or misrouted answer, a MalformedResponse. An error
        object may carry a null id, as JSON-RPC allows when the request could not be read.
        """
        request_id = next(self._ids)
        answer = await self.post(self._request(method, params, request_id), method=method)
        reply = self._reply(answer, method)
        got = answer.get("id")
        if str(got) != str(request_id) and not (got is None and reply.error is not None):
            raise MalformedResponse(f"{method}: answer has id {shown(got)}, the request had "
                                    f"id {request_id} (a stale or misrouted answer)")
        if reply.error is not None and is_rate_limit(reply.error):
            raise rate_limited(reply.error, method) from reply.error
        return reply.value()

    async def batch(self, calls: Sequence[tuple[str, Params]]) -> list[Reply]:
        """Send calls as one batch; replies in request order, each a result or an error.

        Raises BatchUnsupported when the node answers the whole batch with one object, and
        RateLimited when that object, or the answer to any call, is a rate limit.
        """
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        payload = [self._request(m, p, i) for (m, p), i in zip(calls, ids, strict=True)]
        label = f"{calls[0][0]} and {len(calls) - 1} more (batch)"
        answer = await self.post(payload, method=label)
        if isinstance(answer, Mapping):
            error = answer.get("error")
            err = rpc_error(error, label) if error is not None else None
            if err is not None and is_rate_limit(err):
                raise rate_limited(err, label) from err
            raise BatchUnsupported(err.code if err else None,
                                   err.message if err else "answered with a single object")
        if not isinstance(answer, list):
            raise MalformedResponse(f"{label}: answer is not a list: {shown(answer)}")
        # some proxies echo ids as strings; the order of the answers is not guaranteed
        by_id = {str(item.get("id")): item for item in answer if isinstance(item, Mapping)}
        replies = []
        for (method, _), request_id in zip(calls, ids, strict=True):
            if str(request_id) not in by_id:
                raise MalformedResponse(f"{method}: no answer with id {request_id} in batch")
            reply = self._reply(by_id[str(request_id)], method)
            if reply.error is not None and is_rate_limit(reply.error):
                raise rate_limited(reply.error, label) from reply.error
            replies.append(reply)
        return replies

    def _request(self, method: str, params: Params, request_id: int) -> dict[str, Any]:
        return {"jsonrpc": self._version, "id": request_id, "method": method,
                "params": params if isinstance(params, Mapping) else list(params)}

    @staticmethod
    def _reply(answer: Any, method: str) -> Reply:
        if not isinstance(answer, Mapping):
            raise MalformedResponse(f"{method}: answer is not an object: "
                                    f"{shown(answer)}")
        # JSON-RPC 1.0 (Bitcoin Core) always sends both keys, with "error": null on success
        if answer.get("error") is not None:
            return Reply(method, error=tag(rpc_error(answer["error"], method), method))
        if "result" not in answer:
            raise MalformedResponse(f"{method}: answer has neither result nor error")
        return Reply(method, result=answer["result"])

    def _status_error(self, status: int, what: str) -> TransportError:
        hint = " (credentials refused)" if status in (401, 403) else ""
        return TransportError("http_status", f"{what}: HTTP {status}{hint} from {self.where}")

    def _transport_error(self, exc: BaseException, what: str) -> TransportError:
        if isinstance(exc, aiohttp.ClientResponseError):  # aiohttp's "could not parse HTTP"
            said = " ".join(str(exc.message).split())[: SNIPPET * 2] or "garbled"
            return NotHttp(f"{what}: not an HTTP answer: {said} ({self.where})")
        if isinstance(exc, TimeoutError):  # aiohttp's own timeout errors subclass it
            return TransportError("timeout", f"{what}: no answer within {self._limit:g}s "
                                             f"({self.where})")
        kind, reason = _classify(exc)
        return TransportError(kind, f"{what}: {reason} ({self.where})")


def _is_error_envelope(decoded: Any) -> bool:
    return isinstance(decoded, list) or (
        isinstance(decoded, Mapping) and isinstance(decoded.get("error"), Mapping))


def _classify(exc: BaseException) -> tuple[str, str]:
    """(kind, short text) for a network failure; texts never include the URL."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns", "name does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "tls", f"TLS failed: {_os_text(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return "tls", f"TLS failed: {_os_text(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return "tls", f"TLS failed: {_os_text(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return "dns", "name does not resolve"
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "refused", "connection refused"
        return "connect", f"cannot connect: {_os_text(exc.os_error)}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connect", "server closed the connection"
    return "connect", f"{type(exc).__name__}: {_os_text(exc)}"


def _os_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason  # e.g. CERTIFICATE_VERIFY_FAILED, short and stable
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__ if not str(exc) else str(exc)[:SNIPPET * 2]




# --- reading answers ----------------------------------------------------------------------
# A field that is missing or has the wrong type is a MalformedResponse naming the method and
# the key; bool is refused where a number is expected because JSON true is not a count.


def mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"{what}: expected an object, got {shown(value)}")
    return value


def _get(obj: Mapping[str, Any], key: str, what: str) -> Any:
    if obj.get(key) is None:
        raise MalformedResponse(f"{what}: field {key} is missing")
    return obj[key]


def integer(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = _get(obj, key, what)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedResponse(f"{what}: {key} should be an integer, got {shown(value)}")
    return value


def number(obj: Mapping[str, Any], key: str, what: str) -> float:
    value = _get(obj, key, what)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MalformedResponse(f"{what}: {key} should be a number, got {shown(value)}")
    return float(value)


def text(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = _get(obj, key, what)
    if not isinstance(value, str):
        raise MalformedResponse(f"{what}: {key} should be a string, got {shown(value)}")
    return value


def flag(obj: Mapping[str, Any], key: str, what: str) -> bool:
    value = _get(obj, key, what)
    if not isinstance(value, bool):
        raise MalformedResponse(f"{what}: {key} should be true or false, got {shown(value)}")
    return value
