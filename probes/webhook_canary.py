"""The `webhook_canary` probe: a synthetic event sent through the webhook service to a sink
the monitor hosts, timed from the POST to the signed delivery's arrival.

The probe registers (once, and again after a failure) its own endpoint pointing at the sink,
with a secret the monitor knows, so the sink can check the signature before it counts an
arrival. Failure reasons: the usual transport ones talking to the service, STATUS when the
service refuses (e.g. 401), TIMEOUT when no delivery arrives, SLOW beyond `max_delivery`.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from probes.base import (
    OptionError,
    Outcome,
    ProbeContext,
    ProbeResult,
    Reason,
    duration,
    secret,
)

EVENT_TYPE = "crypitor.canary"


@dataclass(frozen=True)
class WebhookCanaryOptions:
    max_delivery: float = duration(5.0)
    api_key: str = secret("")  # the service's API key; empty: the embedded service's own

    def __post_init__(self) -> None:
        if self.max_delivery <= 0:
            raise OptionError("max_delivery", "must be more than 0s", self.max_delivery)


@dataclass
class CanaryInbox:
    """The monitor's side: where its sink reports arrivals and the probes wait for them."""

    sink_base: str  # e.g. "http://127.0.0.1:9300/canary"
    secret: str  # whsec_ secret every canary endpoint is registered with
    _waiting: dict[str, asyncio.Future[float]] = field(default_factory=dict)

    def sink_url(self, service_url: str) -> str:
        """The sink URL the canary of the service at `service_url` registers its endpoint
        with; only its path is exempt from that service's SSRF guard."""
        key = hashlib.sha256(service_url.rstrip("/").encode()).hexdigest()[:16]
        return f"{self.sink_base}/{key}"

    def expect(self, nonce: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[nonce] = future
        return future

    def forget(self, nonce: str) -> None:
        self._waiting.pop(nonce, None)

    def arrived(self, nonce: str, at: float) -> bool:
        """A verified delivery carrying `nonce` arrived at monotonic time `at`."""
        future = self._waiting.pop(nonce, None)
        if future is None or future.done():
            return False  # a retry or a replay of a canary nobody waits for any more
        future.set_result(at)
        return True


class _Refused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class WebhookCanaryProbe:
    def __init__(self, url: str, timeout: float, options: WebhookCanaryOptions,
                 ctx: ProbeContext, inbox: CanaryInbox) -> None:
        if not options.api_key:
            raise OptionError("api_key", "is needed when the service is not embedded", "")
        self._base = url.rstrip("/")
        self._timeout, self._opts, self._ctx, self._inbox = timeout, options, ctx, inbox
        self._headers = {"Authorization": f"Bearer {options.api_key}"}
        self._registered = False

    async def run(self) -> ProbeResult:
        out = Outcome(self._ctx.clock)
        nonce = secrets.token_hex(8)
        arrival = self._inbox.expect(nonce)
        try:
            async with asyncio.timeout(self._timeout):
                if not self._registered:
                    await self._register()
                sent = self._ctx.clock.monotonic()
                await self._call("POST", "/v1/events", {"type": EVENT_TYPE,
                                                         "data": {"nonce": nonce}}, 202)
                waited = await arrival - sent
            out.values["delivery_seconds"] = round(waited, 6)
            if waited > self._opts.max_delivery:
                out.fail(Reason.SLOW, f"delivered in {waited:.2f}s "
                                      f"(at most {self._opts.max_delivery:g}s)")
        except TimeoutError:
            out.fail(Reason.TIMEOUT, f"no delivery arrived within {self._timeout:g}s")
        except _Refused as exc:
            out.fail(exc.reason, exc.detail)
        except aiohttp.ClientConnectorError as exc:
            out.fail(Reason.REFUSED if isinstance(exc.os_error, ConnectionRefusedError)
                     else Reason.CONNECT, f"cannot reach the service: {exc.strerror or exc}")
        except aiohttp.ClientError as exc:
            out.fail(Reason.CONNECT, f"talking to the service: {type(exc).__name__}")
        finally:
            self._inbox.forget(nonce)
        if out.failed:
            self._registered = False  # re-register next time: the endpoint may be disabled
        return out.result()

    async def _register(self) -> None:
        """Replace any endpoint of ours with a fresh one: its secret is only known to us
        at creation, and a disabled one would swallow every canary."""
        sink = self._inbox.sink_url(self._base)
        for endpoint in await self._call("GET", "/v1/endpoints", None, 200):
            if endpoint.get("url") == sink:
                await self._call("DELETE", f"/v1/endpoints/{endpoint['id']}", None, 204)
        await self._call("POST", "/v1/endpoints", {
            "url": sink, "event_types": [EVENT_TYPE], "secret": self._inbox.secret,
            "description": "crypitor monitor canary"}, 201)
        self._registered = True

    async def _call(self, method: str, path: str, body: Any, expect: int) -> Any:
        async with self._ctx.session.request(method, self._base + path, json=body,
                                             headers=self._headers) as resp:
            if resp.status != expect:
                text = (await resp.text())[:200]
                raise _Refused(Reason.STATUS, f"{method} {path}: status {resp.status}, "
                                              f"expected {expect}: {text}")
            return await resp.json() if resp.content_type == "application/json" else None
