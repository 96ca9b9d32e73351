"""What the four blockchain probes share: running a check under the probe's deadline and
turning the `chains` error tree into failure reasons with a one-line detail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from chains import ChainError, MalformedResponse, RpcError, TransportError
from chains.jsonrpc import NotHttp
from probes.base import Clock, Outcome, Reason

DETAIL_MAX = 200

# An HTTP error status from a node URL is almost always a proxy or auth in front of it
# (401/403 credentials, 502/503 node down behind the proxy; 429 is "rate_limited", below).
# The connection itself worked and the answer was proper HTTP, so neither CONNECT nor
# PROTOCOL describes it; STATUS ("unexpected HTTP status") does, and the detail carries the code.
TRANSPORT_REASONS = {
    "timeout": Reason.TIMEOUT,
    "dns": Reason.DNS,
    "refused": Reason.REFUSED,
    "connect": Reason.CONNECT,
    "tls": Reason.TLS,
    "http_status": Reason.STATUS,
    # a provider's quota is not the node failing: its own reason, so rules can tell them
    # apart; an answer over the client's size limit is cut off while it is read
    "rate_limited": Reason.RATE_LIMITED,
    "too_large": Reason.TOO_LARGE,
}


def failure(exc: ChainError) -> tuple[Reason, str]:
    """The reason and one-line detail for a chain error (its message names the RPC method)."""
    if isinstance(exc, NotHttp):
        reason = Reason.PROTOCOL
    elif isinstance(exc, TransportError):
        reason = TRANSPORT_REASONS.get(exc.kind, Reason.CONNECT)
    elif isinstance(exc, RpcError):
        reason = Reason.RPC_ERROR
    elif isinstance(exc, MalformedResponse):
        reason = Reason.MALFORMED
    else:  # a bare ChainError is a client bug in reading the answer; call it malformed
        reason = Reason.MALFORMED
    return reason, one_line(str(exc))


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


async def guarded(out: Outcome, timeout: float,
                  check: Callable[[Outcome], Awaitable[None]]) -> None:
    """Run `check` within `timeout`; a chain error or the deadline becomes the failure.

    The deadline covers the whole check, not each call, so a node that answers slowly to
    every one of several calls still fails on time.
    """
    try:
        async with asyncio.timeout(timeout):
            await check(out)
    except TimeoutError:
        out.fail(Reason.TIMEOUT, f"no complete answer within {timeout:g}s")
    except ChainError as exc:
        out.fail(*failure(exc))


def age_seconds(clock: Clock, then: datetime | int) -> float:
    """Seconds since `then` (a datetime, or unix seconds: a node's absurd timestamp must not
    overflow a datetime); a node clock ahead of ours reads as 0, not as a negative age."""
    since = clock.now().timestamp() - then if isinstance(then, int) else \
        (clock.now() - then).total_seconds()
    return max(0.0, round(since, 3))


def check_peers(out: Outcome, peers: int, minimum: int) -> None:
    if peers < minimum:
        out.fail(Reason.PEERS, f"{peers} peers, at least {minimum} wanted")
