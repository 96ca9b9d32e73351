"""The `xrpl` probe: rippled's own health check from server_info — server state, validated
ledger age, peers and load — with rippled's warning thresholds as defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog import XRPL_HEALTHY_STATES
from chains.xrpl import XrplClient
from probes.base import OptionError, Outcome, ProbeContext, ProbeResult, Reason, duration
from probes.chain import check_peers, guarded


@dataclass(frozen=True)
class XrplOptions:
    max_ledger_age: float = duration(7.0)  # fails when the age reaches it, as rippled warns
    min_peers: int = 8  # rippled warns at 7 peers or fewer
    max_load_factor: float = 100.0  # fails above it

    def __post_init__(self) -> None:
        if self.max_ledger_age <= 0:
            raise OptionError("max_ledger_age", "must be more than 0s", self.max_ledger_age)
        if self.min_peers < 0:
            raise OptionError("min_peers", "must be 0 or more", self.min_peers)
        if self.max_load_factor < 1:
            # 1 is an idle server's load factor; below it every probe would fail
            raise OptionError("max_load_factor", "must be 1 or more", self.max_load_factor)


class XrplProbe:
    def __init__(self, url: str, timeout: float, options: XrplOptions,
                 ctx: ProbeContext) -> None:
        self._timeout, self._options, self._ctx = timeout, options, ctx
        self._client = XrplClient(ctx.session, url, timeout)

    async def run(self) -> ProbeResult:
        out = Outcome(self._ctx.clock)
        await guarded(out, self._timeout, self._check)
        return out.result()

    async def _check(self, out: Outcome) -> None:
        info = await self._client.server_info()
        ledger, opts = info.validated_ledger, self._options
        out.values.update(peers=info.peers, server_state=info.server_state,
                          load_factor=info.load_factor)
        if ledger is not None:
            out.values.update(head_block=ledger.seq, head_age_seconds=float(ledger.age))

        # the server's state is the cause; a missing or old ledger usually its consequence
        if info.server_state not in XRPL_HEALTHY_STATES:
            out.fail(Reason.STATE, f"server_state is {info.server_state}")
        if info.amendment_blocked:
            out.fail(Reason.STATE, "amendment blocked: the server must be upgraded")
        if ledger is None:
            out.fail(Reason.STALE, "no validated ledger")
        elif ledger.age >= opts.max_ledger_age:
            out.fail(Reason.STALE, f"validated ledger {ledger.seq} is {ledger.age}s old "
                                   f"(must be under {opts.max_ledger_age:g}s)")
        check_peers(out, info.peers, opts.min_peers)
        if info.load_factor > opts.max_load_factor:
            out.fail(Reason.LOAD, f"load_factor is {info.load_factor:g} "
                                  f"(at most {opts.max_load_factor:g})")
