"""Waiting for a draining process's listeners (the SIGTERM drain of `crypitor service` and
`crypitor run`): first `/readyz` turns 503, then the listener closes. Both polls end by
themselves only when that happens: callers bound them with their test's timeout."""

from __future__ import annotations

import asyncio

import aiohttp


async def until_not_ready(http: aiohttp.ClientSession, base: str) -> aiohttp.ClientResponse:
    """The first 503 from `base`/readyz (its body read)."""
    while True:
        async with http.get(f"{base}/readyz") as resp:
            if resp.status == 503:
                await resp.read()
                return resp
        await asyncio.sleep(0.01)


async def until_refused(http: aiohttp.ClientSession, base: str) -> None:
    """Once `base` refuses connections: its listener is closed."""
    while True:
        try:
            async with http.get(f"{base}/healthz") as resp:
                await resp.read()
        except aiohttp.ClientConnectionError:
            return
        await asyncio.sleep(0.01)
