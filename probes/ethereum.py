"""The `ethereum` probe: is an EVM execution node on the right chain, synced, close to its
reference, producing fresh heads and connected to peers (Chainlink/ethPandaOps thresholds).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from chains import ChainError
from chains.ethereum import EthereumClient
from chains.ethereum_types import NodeHealth, SyncStatus
from probes.base import (
    OptionError,
    Outcome,
    ProbeContext,
    ProbeResult,
    Reason,
    duration,
    is_env_ref,
    secret,
)
from probes.chain import age_seconds, check_peers, failure, guarded

# The reference only tells us how far behind we are; its share of the deadline is smaller
# so a slow reference costs a warning, never a timeout of the node we actually probe.
REFERENCE_SHARE = 0.8


def is_url(reference: str) -> bool:
    return urlsplit(reference).scheme in ("http", "https")


@dataclass(frozen=True)
class EthereumOptions:
    # another target's name, or an http(s) node URL (which may carry an API key: env: works,
    # and messages name only its host)
    reference: str = secret("")
    max_lag_blocks: int = 5  # Chainlink SyncThreshold
    max_head_age: float = duration(180.0)  # Chainlink NoNewHeadsThreshold
    min_peers: int = 1
    chain_id: int | None = None

    def __post_init__(self) -> None:
        if self.reference != self.reference.strip():
            raise OptionError("reference", "must not start or end with spaces", self.reference)
        if is_env_ref(self.reference):
            pass  # resolved (and checked again) when the probe is built
        elif "://" in self.reference and not (is_url(self.reference)
                                            and urlsplit(self.reference).hostname):
            raise OptionError("reference", "must be a target name or an http(s) URL",
                              self.reference)
        if self.max_lag_blocks < 0:
            raise OptionError("max_lag_blocks", "must be 0 or more", self.max_lag_blocks)
        if self.max_head_age <= 0:
            raise OptionError("max_head_age", "must be more than 0s", self.max_head_age)
        if self.min_peers < 0:
            raise OptionError("min_peers", "must be 0 or more", self.min_peers)
        if self.chain_id is not None and self.chain_id <= 0:
            raise OptionError("chain_id", "must be a positive chain id", self.chain_id)


class EthereumProbe:
    def __init__(self, url: str, timeout: float, options: EthereumOptions,
                 ctx: ProbeContext) -> None:
        self._timeout, self._options, self._ctx = timeout, options, ctx
        self._client = EthereumClient(ctx.session, url, timeout)
        self._reference = (EthereumClient(ctx.session, options.reference,
                                          timeout * REFERENCE_SHARE)
                           if is_url(options.reference) else None)

    async def run(self) -> ProbeResult:
        out = Outcome(self._ctx.clock)
        await guarded(out, self._timeout, self._check)
        return out.result()

    async def _check(self, out: Outcome) -> None:
        # ask the reference at the same time, so a remote reference adds no latency
        pending = (asyncio.create_task(_reference_head(self._reference))
                   if self._reference is not None else None)
        try:
            health = await self._client.health()
        except BaseException:
            if pending is not None:
                pending.cancel()
            raise
        reference = await pending if pending is not None else self._reference_by_name()
        self._judge(out, health, reference)

    def _judge(self, out: Outcome, health: NodeHealth, reference: int | str | None) -> None:
        opts, values = self._options, out.values
        values.update(head_block=health.head, syncing=bool(health.syncing),
                      chain_id=health.chain_id,
                      head_age_seconds=age_seconds(self._ctx.clock, health.latest.timestamp))
        if health.peers is not None:
            values["peers"] = health.peers
        if isinstance(reference, int):
            values["block_lag"] = max(0, reference - health.head)
        elif isinstance(reference, str):
            out.warnings.append(reference)

        if opts.chain_id is not None and health.chain_id != opts.chain_id:
            out.fail(Reason.CHAIN_ID,
                     f"eth_chainId is {health.chain_id}, expected {opts.chain_id}")
        if health.syncing:
            out.fail(Reason.SYNCING, "eth_syncing: " + _sync_text(health.syncing))
        lag = values.get("block_lag")
        if isinstance(lag, int) and lag > opts.max_lag_blocks:
            out.fail(Reason.LAG, f"{lag} blocks behind reference {self._reference_label()} "
                                 f"(at most {opts.max_lag_blocks})")
        age = values["head_age_seconds"]
        if isinstance(age, float) and age > opts.max_head_age:
            out.fail(Reason.STALE, f"head block {health.head} is {age:.0f}s old "
                                   f"(at most {opts.max_head_age:g}s)")
        if health.peers is not None:
            check_peers(out, health.peers, opts.min_peers)

    def _reference_label(self) -> str:
        ref = self._options.reference
        return (urlsplit(ref).hostname or "URL") if is_url(ref) else ref

    def _reference_by_name(self) -> int | str | None:
        name = self._options.reference
        if not name:
            return None
        result = self._ctx.last_result(name)
        head = result.values.get("head_block") if result is not None else None
        if isinstance(head, int) and not isinstance(head, bool):
            return head
        return f"reference {name} has no recent head_block, block_lag not measured"


async def _reference_head(reference: EthereumClient) -> int | str:
    """The reference node's head, or a warning saying why there is none."""
    try:
        return await reference.block_number()
    except ChainError as exc:
        return f"reference unavailable, block_lag not measured: {failure(exc)[1]}"


def _sync_text(syncing: SyncStatus | bool) -> str:
    if isinstance(syncing, SyncStatus) and None not in (syncing.current_block,
                                                        syncing.highest_block):
        return f"node is syncing (block {syncing.current_block} of {syncing.highest_block})"
    return "node is syncing"
