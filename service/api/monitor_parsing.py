"""Address-monitor request bodies and queries parsed into typed values, once, at the edge.

Addresses are `0x` + 40 hex digits: all lower-case or all upper-case as they are, mixed case
only as a valid EIP-55 checksum (a typo in a checksummed address is caught, not watched);
they are kept lower-case, and duplicates collapse. Every parser raises
`service.api.parsing.BadRequest(status, message, field)` with the field's path, such as
`addresses[12]` or `conditions.contracts[0]`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from chains.keccak import to_checksums
from service.api.parsing import BadRequest, json_object, reject_unknown
from service.models import Direction, Monitor

MAX_ADDRESSES = 100_000  # per monitor, and per list in one request
MAX_CONTRACTS = 1000
MAX_TAGS = 32
MAX_TAG_LENGTH = 64
MAX_CONFIRMATIONS = 10_000
MAX_HISTORY = 1000  # entries one history request returns
DEFAULT_HISTORY = 100
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
_EVENT_ID = re.compile(r"evt_[0-9a-f]{16,32}")
_LIMIT = re.compile(r"[0-9]{1,6}")
_CREATE = {"chain", "addresses", "conditions", "direction", "confirmations", "endpoint_id",
           "tags", "enabled"}
_PATCH = {"enabled", "add_addresses", "remove_addresses", "conditions", "direction",
          "confirmations", "tags", "endpoint_id"}
_BAD_CHECKSUM = ("has mixed case but is not a valid EIP-55 checksum: check it for typos"
                 " (all lower-case skips the check)")


def _is_mixed(digits: str) -> bool:
    return digits != digits.lower() and digits != digits.upper()


def _bad_checksums(texts: list[str]) -> list[int]:
    """Positions of the mixed-case addresses among `texts` that are not their EIP-55 form,
    checked in one batch."""
    mixed = [i for i, text in enumerate(texts) if _is_mixed(text[2:])]
    return [i for i, good in zip(mixed, to_checksums([texts[i] for i in mixed]), strict=True)
            if good != texts[i]]


def address_list(value: Any, where: str, limit: int = MAX_ADDRESSES) -> frozenset[str]:
    """A JSON list of addresses as a set of lower-case addresses."""
    if not isinstance(value, list):
        raise BadRequest(422, 'must be a list of "0x" + 40 hex digit addresses', where)
    if len(value) > limit:
        raise BadRequest(413, f"holds {len(value)} addresses; at most {limit}", where)
    for i, text in enumerate(value):
        if not isinstance(text, str) or not _ADDRESS.fullmatch(text):
            raise BadRequest(422, 'must be "0x" and 40 hex digits', f"{where}[{i}]")
    if bad := _bad_checksums(value):
        raise BadRequest(422, _BAD_CHECKSUM, f"{where}[{bad[0]}]")
    return frozenset([text.lower() for text in value])


def address(value: Any, where: str) -> str:
    """One address, lower-case (the same rules as in a list)."""
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise BadRequest(422, 'must be "0x" and 40 hex digits', where)
    if _bad_checksums([value]):
        raise BadRequest(422, _BAD_CHECKSUM, where)
    return value.lower()


@dataclass(frozen=True)
class Conditions:
    native: bool = True
    erc20: bool = True
    erc721: bool = True
    contracts: frozenset[str] = frozenset()


def conditions(value: Any, where: str = "conditions") -> Conditions:
    """`{native, erc20, erc721: bool, contracts: [address]}`: the kinds set true are
    watched (absent ones are not); `contracts` limits token transfers to those contracts."""
    body = json_object(value, where)
    reject_unknown(body, {"native", "erc20", "erc721", "contracts"}, where)
    kinds = {}
    for kind in ("native", "erc20", "erc721"):
        flag = body.get(kind, False)
        if not isinstance(flag, bool):
            raise BadRequest(422, "must be true or false", f"{where}.{kind}")
        kinds[kind] = flag
    if not any(kinds.values()):
        raise BadRequest(422, "must set at least one of native, erc20, erc721 to true", where)
    contracts = address_list(body.get("contracts", []), f"{where}.contracts", MAX_CONTRACTS)
    if contracts and not (kinds["erc20"] or kinds["erc721"]):
        raise BadRequest(422, "applies to erc20 and erc721 transfers: set one of them true",
                         f"{where}.contracts")
    return Conditions(contracts=contracts, **kinds)


def _direction(value: Any) -> Direction:
    for d in DIRECTIONS:
        if value == d:
            return d
    raise BadRequest(422, f"must be one of {', '.join(DIRECTIONS)}", "direction")


def _confirmations(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 <= value <= MAX_CONFIRMATIONS):
        raise BadRequest(422, f"must be a whole number from 0 to {MAX_CONFIRMATIONS}, or null"
                         " for the chain's default", "confirmations")
    return value


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise BadRequest(422, f"must be a list of at most {MAX_TAGS} strings", "tags")
    for i, tag in enumerate(value):
        if not isinstance(tag, str) or not 0 < len(tag) <= MAX_TAG_LENGTH:
            raise BadRequest(422, f"must be a string of 1-{MAX_TAG_LENGTH} characters",
                             f"tags[{i}]")
    return tuple(dict.fromkeys(value))  # duplicates dropped, order kept


def _endpoint_id(value: Any) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BadRequest(422, "must be the id of an endpoint", "endpoint_id")
    return value


def _enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(422, "must be true or false", "enabled")
    return value


def new_monitor(value: Any, chains: Collection[str], monitor_id: str,
                now: datetime) -> Monitor:
    """A `POST /v1/monitors` body as a Monitor. `chains`: the configured chain names. Whether
    the endpoint exists is the caller's check (it needs the store)."""
    body = json_object(value, None)
    reject_unknown(body, _CREATE)
    for key in ("chain", "addresses", "endpoint_id"):
        if key not in body:
            raise BadRequest(422, "is required", key)
    chain = body["chain"]
    if not isinstance(chain, str) or chain not in chains:
        names = ", ".join(sorted(chains)) or "none"
        raise BadRequest(422, f"must name a configured chain ([service.chains.NAME]; "
                         f"configured: {names})", "chain")
    c = conditions(body["conditions"]) if "conditions" in body else Conditions()
    return Monitor(id=monitor_id, chain=chain,
                   addresses=address_list(body["addresses"], "addresses"),
                   endpoint_id=_endpoint_id(body["endpoint_id"]), native=c.native,
                   erc20=c.erc20, erc721=c.erc721, contracts=c.contracts,
                   direction=_direction(body.get("direction", "all")),
                   confirmations=_confirmations(body.get("confirmations")),
                   tags=_tags(body.get("tags", [])), enabled=_enabled(body.get("enabled", True)),
                   created_at=now)


@dataclass(frozen=True)
class MonitorChanges:
    """What a `PATCH /v1/monitors/{id}` asks for; None (or empty) leaves a field as it is."""

    enabled: bool | None = None
    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()
    conditions: Conditions | None = None
    direction: Direction | None = None
    confirmations: int | None = None
    confirmations_given: bool = False  # `"confirmations": null` returns to the default
    tags: tuple[str, ...] | None = None
    endpoint_id: str | None = None

    def apply(self, monitor: Monitor) -> Monitor:
        changes: dict[str, Any] = {}
        if self.add or self.remove:
            addresses = (monitor.addresses | self.add) - self.remove
            if len(addresses) > MAX_ADDRESSES:
                raise BadRequest(422, f"would make the monitor hold {len(addresses)} addresses;"
                                 f" at most {MAX_ADDRESSES}", "add_addresses")
            changes["addresses"] = addresses
        if self.conditions is not None:
            changes.update(dataclasses.asdict(self.conditions))
        if self.confirmations_given:
            changes["confirmations"] = self.confirmations
        for name in ("enabled", "direction", "tags", "endpoint_id"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        return dataclasses.replace(monitor, **changes)


def monitor_changes(value: Any) -> MonitorChanges:
    body = json_object(value, None)
    reject_unknown(body, _PATCH)
    add = address_list(body.get("add_addresses", []), "add_addresses")
    remove_list = body.get("remove_addresses", [])
    remove = address_list(remove_list, "remove_addresses")
    if add & remove:
        i = next(i for i, a in enumerate(remove_list) if a.lower() in add)
        raise BadRequest(422, "is also in add_addresses", f"remove_addresses[{i}]")
    return MonitorChanges(
        enabled=_enabled(body["enabled"]) if "enabled" in body else None,
        add=add, remove=remove,
        conditions=conditions(body["conditions"]) if "conditions" in body else None,
        direction=_direction(body["direction"]) if "direction" in body else None,
        confirmations=_confirmations(body.get("confirmations")),
        confirmations_given="confirmations" in body,
        tags=_tags(body["tags"]) if "tags" in body else None,
        endpoint_id=_endpoint_id(body["endpoint_id"]) if "endpoint_id" in body else None)


@dataclass(frozen=True)
class HistoryQuery:
    tx_hash: str | None = None
    address: str | None = None
    limit: int = DEFAULT_HISTORY
    before: str | None = None


def history_query(query: Mapping[str, str]) -> HistoryQuery:
    """`?tx_hash=&address=&limit=&before=` of `GET /v1/monitors/{id}/events`."""
    reject_unknown(query, {"tx_hash", "address", "limit", "before"})
    before = query.get("before")
    if before is not None and not _EVENT_ID.fullmatch(before):
        raise BadRequest(422, "must be an event id (evt_...) from an earlier page", "before")
    tx_hash = query.get("tx_hash")
    if tx_hash is not None and not _TX_HASH.fullmatch(tx_hash):
        raise BadRequest(422, 'must be "0x" and 64 hex digits', "tx_hash")
    found = query.get("address")
    limit = query.get("limit", str(DEFAULT_HISTORY))
    if not _LIMIT.fullmatch(limit) or not 0 < int(limit) <= MAX_HISTORY:
        raise BadRequest(422, f"must be a whole number from 1 to {MAX_HISTORY}", "limit")
    return HistoryQuery(tx_hash.lower() if tx_hash else None,
                        address(found, "address") if found is not None else None, int(limit),
                        before)


def list_query(query: Mapping[str, str]) -> str | None:
    """`?chain=` of `GET /v1/monitors`: any name (monitors of a chain no longer configured
    stay listable)."""
    reject_unknown(query, {"chain"})
    return query.get("chain")
