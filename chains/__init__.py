"""JSON-RPC clients and models for the chains we watch: Ethereum/EVM, EOS, XRPL, Bitcoin.

Every client takes an `aiohttp.ClientSession` (shared, owned by the caller) and an explicit
timeout. Errors, all raised from the I/O boundary with the original as `__cause__`:

    ChainError                 base of everything below
    ├── TransportError         the answer never arrived; `kind` says why:
    │   │                      "timeout", "dns", "refused", "connect", "tls", "http_status",
    │   │                      "too_large" (the answer passed the client's
    │   │                      `max_response_bytes`: refused while it was read, the
    │   │                      connection dropped)
    │   └── RateLimited        kind "rate_limited": HTTP 429, or an error object with code
    │                          -32005 (EIP-1474 "limit exceeded") or saying "rate limit" /
    │                          "too many requests"; `retry_after` (seconds, from the
    │                          Retry-After header, 0..300) or None. Not a refused batch:
    │                          back off and send the same batch again later
    ├── RpcError               the node answered with an error object (`code`, `message`)
    └── MalformedResponse      the answer is not JSON, or lacks fields / has wrong types
"""

from __future__ import annotations


class ChainError(Exception):
    """Base of every error the chain clients raise."""


class TransportError(ChainError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RateLimited(TransportError):
    """The node (or the provider in front of it) asks us to slow down."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__("rate_limited", message)
        self.retry_after = retry_after


class RpcError(ChainError):
    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"RPC error {code}: {message}" if code is not None else message)
        self.code, self.message = code, message


class MalformedResponse(ChainError):
    """The node's answer cannot be read as what the method promises."""
