"""Keccak-256 as Ethereum uses it and EIP-55 address checksums, on pycryptodome's
`Crypto.Hash.keccak` (a maintained C implementation). It is Keccak's original padding, not
NIST SHA3-256, which is what `hashlib.sha3_256` computes; OpenSSL 3.0 offers no Keccak-256.
"""

from __future__ import annotations

from collections.abc import Sequence

from Crypto.Hash import keccak

__all__ = ["RATE", "keccak256", "keccak256_many", "to_checksum", "to_checksums"]

RATE = 136  # bytes absorbed per permutation, (1600 - 2 * 256) / 8: where block edges fall


def keccak256(data: bytes) -> bytes:
    """The 32-byte Keccak-256 digest of `data` (Solidity's `keccak256`)."""
    return keccak.new(data=data, digest_bits=256).digest()


def keccak256_many(items: Sequence[bytes]) -> list[bytes]:
    """`keccak256` of each item, in order."""
    new = keccak.new
    return [new(data=item, digest_bits=256).digest() for item in items]


def _hex40(address: str) -> str:
    hex40 = address[2:] if address[:2] in ("0x", "0X") else address
    if len(hex40) != 40:
        raise ValueError(f"an address is 40 hex digits, not {len(hex40)}")
    int(hex40, 16)  # ValueError when not hex
    return hex40.lower()


def to_checksums(addresses: Sequence[str]) -> list[str]:
    """The EIP-55 form of each address (40 hex digits, `0x` optional, any case): a letter is
    upper-case where the same nibble of keccak256(lower-case hex text) is 8 or more.
    Raises ValueError for anything that is not 40 hex digits."""
    lowers = [_hex40(a) for a in addresses]
    digests = keccak256_many([h.encode("ascii") for h in lowers])
    return ["0x" + "".join([c.upper() if n >= "8" else c
                            for c, n in zip(h, d.hex(), strict=False)])
            for h, d in zip(lowers, digests, strict=True)]


def to_checksum(address_hex40: str) -> str:
    """The EIP-55 form of one address; see `to_checksums`."""
    return to_checksums([address_hex40])[0]
