"""Ethereum's logs bloom (the yellow paper's M3:2048): a block header's 2048-bit filter of
every log's address and topics. Each item sets three bits taken from its Keccak-256 digest,
so "the bits of X are not all set" proves no log of the block has X, while "they are all
set" means only that it may.

A bloom is handled as one Python int (`int.from_bytes(header_bytes, "big")`): bit b of that
int is the header's bit b, so testing an item is one `&` against its mask.
"""

from __future__ import annotations

from collections.abc import Iterable

from chains.keccak import keccak256, keccak256_many

__all__ = ["BLOOM_BYTES", "address_topic", "bloom_mask", "bloom_masks", "may_contain"]

BLOOM_BYTES = 256
_ADDRESS_PAD = bytes(12)  # an address as an indexed topic: 12 zero bytes, then its 20


def _mask(digest: bytes) -> int:
    mask = 0
    for i in (0, 2, 4):  # the low 11 bits of each of the first three byte pairs
        mask |= 1 << (((digest[i] << 8) | digest[i + 1]) & 2047)
    return mask


def bloom_mask(item: bytes) -> int:
    """The bits `item` (a log's 20-byte address or a 32-byte topic) sets in a bloom."""
    return _mask(keccak256(item))


def bloom_masks(items: Iterable[bytes]) -> list[int]:
    """`bloom_mask` of each item, in order."""
    return [_mask(d) for d in keccak256_many(list(items))]


def address_topic(address: str) -> bytes:
    """An address (0x + 40 hex digits) as the 32-byte topic an indexed address argument is."""
    return _ADDRESS_PAD + bytes.fromhex(address[2:])


def may_contain(bloom: int, mask: int) -> bool:
    return bloom & mask == mask
