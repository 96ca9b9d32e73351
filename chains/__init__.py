"""JSON-RPC clients and models for the chains we watch: Ethereum/EVM, EOS, XRPL, Bitcoin.

Every client takes an `aiohttp.ClientSession` (shared, owned by the caller) and an explicit
timeout. Errors, all raised from the I/O boundary with the original as `__cause__`:

    ChainError                 base of everything below
    ├── TransportError         the answer never arrived; `kind` says why:
    │                          "timeout", "dns", "refused", "connect", "tls", "http_status"
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


class RpcError(ChainError):
    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"RPC error {code}: {message}" if code is not None else message)
        self.code, self.message = code, message


class MalformedResponse(ChainError):
    """The node's answer cannot be read as what the method promises."""
