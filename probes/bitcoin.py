"""The `bitcoin` probe: is a Bitcoin Core node out of initial block download, with its
validated blocks close to the best header it knows, and connected to enough peers.
"""

from __future__ import annotations

from dataclasses import dataclass

from chains.bitcoin import BitcoinClient
from probes.base import (
    OptionError,
    Outcome,
    ProbeContext,
    ProbeResult,
    Reason,
    is_env_ref,
    secret,
)
from probes.chain import check_peers, guarded


@dataclass(frozen=True)
class BitcoinOptions:
    max_lag_blocks: int = 2
    min_peers: int = 4
    rpc_user: str = ""  # empty: credentials from URL userinfo, or none
    rpc_password: str = secret("")

    def __post_init__(self) -> None:
        if self.max_lag_blocks < 0:
            raise OptionError("max_lag_blocks", "must be 0 or more", self.max_lag_blocks)
        if self.min_peers < 0:
            raise OptionError("min_peers", "must be 0 or more", self.min_peers)
        if self.rpc_password and not self.rpc_user:
            raise OptionError("rpc_user", "is required when rpc_password is set", "")


class BitcoinProbe:
    def __init__(self, url: str, timeout: float, options: BitcoinOptions,
                 ctx: ProbeContext) -> None:
        self._timeout, self._options, self._ctx = timeout, options, ctx
        self._client = BitcoinClient(ctx.session, url, timeout, user=options.rpc_user,
                                     password=options.rpc_password)

    async def run(self) -> ProbeResult:
        out = Outcome(self._ctx.clock)
        if is_env_ref(self._options.rpc_password):
            # the loader resolves env: secrets; sending "env:NAME" as a password helps nobody
            out.fail(Reason.CONFIG, "rpc_password is an unresolved env: reference")
            return out.result()
        await guarded(out, self._timeout, self._check)
        return out.result()

    async def _check(self, out: Outcome) -> None:
        chain = await self._client.blockchain_info()
        out.values.update(head_block=chain.blocks, block_lag=chain.lag,
                          syncing=chain.initial_block_download)
        network = await self._client.network_info()
        out.values["peers"] = network.connections

        opts = self._options
        if chain.initial_block_download:
            out.fail(Reason.SYNCING, f"initial block download, "
                                     f"{chain.verification_progress:.1%} verified")
        if chain.lag > opts.max_lag_blocks:
            out.fail(Reason.LAG, f"{chain.lag} blocks behind the best header "
                                 f"(at most {opts.max_lag_blocks})")
        check_peers(out, network.connections, opts.min_peers)
