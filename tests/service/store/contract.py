"""What the store contract suite shares: the `test_contract_*` modules here run every test
once per backend in tests/support/stores.py, and every backend must pass each of them.

Times are passed in (`NOW` and offsets from it), never read from a clock, so leases, retry
times and the idempotency window are checked exactly and without waiting.
"""

from __future__ import annotations

from datetime import timedelta

from service.models import MatchRecord, Monitor, NewEvent
from tests.support.stores import NOW

S = timedelta(seconds=1)


def monitor(monitor_id: str, *addresses: str, chain: str = "ethereum", endpoint_id: str = "ep_a",
            enabled: bool = True) -> Monitor:
    """A monitor with every field away from its default, so round trips check them all."""
    return Monitor(id=monitor_id, chain=chain,
                   addresses=frozenset(addresses or [f"0x{1:040x}", f"0x{2:040x}"]),
                   endpoint_id=endpoint_id, native=False, erc20=True, erc721=False,
                   contracts=frozenset({"0x" + "ab" * 20}), direction="in", confirmations=3,
                   tags=("treasury", "hot"), enabled=enabled, created_at=NOW)


def transfer(monitor_id: str, tx: int, *addresses: int, kind: str = "transfer.detected",
             block: int = 100) -> tuple[NewEvent, MatchRecord]:
    """A follower's event and its match; the idempotency key is deterministic, as theirs."""
    tx_hash = f"0x{tx:064x}"
    watched = tuple(f"0x{a:040x}" for a in addresses)
    event = NewEvent(kind, {"tx": tx_hash, "monitor": monitor_id},
                     f"ethereum/{tx_hash}/{monitor_id}/{kind}")
    return event, MatchRecord(monitor_id, kind, tx_hash, watched, block)
