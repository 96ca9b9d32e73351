"""The `eos` probe: is a nodeos (Antelope) node producing fresh heads with finality keeping up,
from /v1/chain/get_info. Blocks come every 0.5 s, so a 10 s old head already means trouble.
"""

from __future__ import annotations

from dataclasses import dataclass

from chains.eos import EosClient
from probes.base import OptionError, Outcome, ProbeContext, ProbeResult, Reason, duration
from probes.chain import age_seconds, guarded


@dataclass(frozen=True)
class EosOptions:
    max_head_age: float = duration(10.0)
    # legacy DPoS finality trails the head by ~330 blocks; Savanna by ~2
    max_lib_lag: int = 400

    def __post_init__(self) -> None:
        if self.max_head_age <= 0:
            raise OptionError("max_head_age", "must be more than 0s", self.max_head_age)
        if self.max_lib_lag < 0:
            raise OptionError("max_lib_lag", "must be 0 or more", self.max_lib_lag)


class EosProbe:
    def __init__(self, url: str, timeout: float, options: EosOptions,
                 ctx: ProbeContext) -> None:
        self._timeout, self._options, self._ctx = timeout, options, ctx
        self._client = EosClient(ctx.session, url, timeout)

    async def run(self) -> ProbeResult:
        out = Outcome(self._ctx.clock)
        await guarded(out, self._timeout, self._check)
        return out.result()

    async def _check(self, out: Outcome) -> None:
        info = await self._client.get_info()
        age = age_seconds(self._ctx.clock, info.head_block_time)
        out.values.update(head_block=info.head_block_num, lib_lag=info.lib_lag,
                          head_age_seconds=age)
        opts = self._options
        if age > opts.max_head_age:
            produced = info.head_block_time.isoformat(timespec="milliseconds")
            out.fail(Reason.STALE, f"head block {info.head_block_num} produced at {produced} "
                                   f"is {age:.1f}s old (at most {opts.max_head_age:g}s)")
        if info.lib_lag > opts.max_lib_lag:
            out.fail(Reason.LAG, f"last irreversible block is {info.lib_lag} blocks behind "
                                 f"the head (at most {opts.max_lib_lag})")
