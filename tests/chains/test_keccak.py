"""Keccak-256 and EIP-55 against published vectors, and against a real Ethereum node's
`web3_sha3` at every length around the block boundaries."""

from __future__ import annotations

import hashlib
import random

import pytest

from chains.keccak import RATE, keccak256, keccak256_many, to_checksum, to_checksums
from tests.support.chain_nodes import GanacheNode

pytestmark = pytest.mark.timeout(60)

# Keccak-256 digests as Ethereum tooling publishes them (empty input: the hash of empty code)
VECTORS = {
    b"": "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
    b"abc": "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45",
    b"The quick brown fox jumps over the lazy dog":
        "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15",
    # the ERC-20/ERC-721 Transfer event topic
    b"Transfer(address,address,uint256)":
        "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
}
# EIP-55's own examples: all caps, all lower, and mixed case
EIP55 = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


def test_published_digests() -> None:
    for data, digest in VECTORS.items():
        assert keccak256(data).hex() == digest, data
    # Keccak's padding, not NIST SHA-3's: the two differ on every input
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()


def test_eip55_examples_from_any_case() -> None:
    for address in EIP55:
        for spelling in (address, address.lower(), "0x" + address[2:].upper(), address[2:]):
            assert to_checksum(spelling) == address
    assert to_checksums([a.lower() for a in EIP55]) == EIP55


def test_to_checksum_refuses_what_is_not_an_address() -> None:
    for bad in ("0x1234", "0x" + "g" * 40, "", "0x" + "a" * 41):
        with pytest.raises(ValueError):
            to_checksum(bad)


def test_many_at_once_equals_one_at_a_time() -> None:
    rng = random.Random(55)
    items = [rng.randbytes(rng.choice([0, 1, 20, 40, RATE - 1, RATE, RATE + 1, 300]))
             for _ in range(300)]
    assert keccak256_many(items) == [keccak256(item) for item in items]
    addresses = [rng.randbytes(20).hex() for _ in range(5000)]  # past one batch
    assert to_checksums(addresses)[4321] == to_checksum(addresses[4321])
    assert keccak256_many([]) == []


async def test_digests_match_a_node_at_every_block_boundary(ganache: GanacheNode) -> None:
    rng = random.Random(7)
    lengths = [*range(0, 3), *range(RATE - 3, RATE + 3), *range(2 * RATE - 2, 2 * RATE + 2),
               500]
    for length in lengths:
        data = rng.randbytes(length)
        assert keccak256(data).hex() == (await ganache.rpc("web3_sha3", ["0x" + data.hex()]))[2:]
