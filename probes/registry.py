"""Probe types by name: each type's options class, accepted URL schemes and constructor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes import bitcoin, eos, ethereum, http, tcp, webhook_canary, xrpl
from probes.base import Probe, ProbeContext

Build = Callable[[str, float, Any, ProbeContext], Probe]


@dataclass(frozen=True)
class ProbeType:
    name: str
    options: type
    schemes: tuple[str, ...]
    build: Build | None  # None: the monitor builds it (it needs the monitor's own parts)
    chain: bool = False  # publishes the crypitor_chain_* gauges


_WEB = ("http", "https")

TYPES: dict[str, ProbeType] = {
    t.name: t
    for t in (
        ProbeType("http", http.HttpOptions, _WEB, http.HttpProbe),
        ProbeType("tcp", tcp.TcpOptions, ("tcp",), tcp.TcpProbe),
        ProbeType("ethereum", ethereum.EthereumOptions, _WEB, ethereum.EthereumProbe, True),
        ProbeType("eos", eos.EosOptions, _WEB, eos.EosProbe, True),
        ProbeType("xrpl", xrpl.XrplOptions, _WEB, xrpl.XrplProbe, True),
        ProbeType("bitcoin", bitcoin.BitcoinOptions, _WEB, bitcoin.BitcoinProbe, True),
        ProbeType("webhook_canary", webhook_canary.WebhookCanaryOptions, _WEB, None),
    )
}
