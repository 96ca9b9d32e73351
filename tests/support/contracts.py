"""Tiny EVM contracts assembled here by hand, for tests and benchmarks that need real Transfer
logs on ganache: `Erc20Like` emits `Transfer(from, to, amount)` as LOG3 (amount in data),
`Erc721Like` emits `Transfer(from, to, tokenId)` as LOG4. Neither keeps balances: every call
emits one log per (from, to, value) triple in its calldata, which is all a follower reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
CALL_GAS = 8_000_000  # explicit: ganache's default (90,000) covers a couple of logs only

OPCODES = {
    "STOP": 0x00, "ADD": 0x01, "LT": 0x10, "ISZERO": 0x15, "CALLDATALOAD": 0x35,
    "CALLDATASIZE": 0x36, "CODECOPY": 0x39, "MSTORE": 0x52, "JUMP": 0x56, "JUMPI": 0x57,
    "JUMPDEST": 0x5B, "PUSH1": 0x60, "PUSH2": 0x61, "PUSH32": 0x7F, "DUP1": 0x80,
    "DUP2": 0x81, "DUP3": 0x82, "LOG3": 0xA3, "LOG4": 0xA4, "RETURN": 0xF3, "REVERT": 0xFD,
}


@dataclass(frozen=True)
class Label:
    """A position in a program: placed as an item, referenced as a PUSH2 operand."""

    name: str


Item = str | Label | tuple[str, int | Label]  # an opcode, a label, or a PUSHn with its operand


def assemble(program: Sequence[Item]) -> bytes:
    """Bytecode for a list of opcodes; labels resolve in a second pass (PUSH2 only)."""
    def width(op: str) -> int:
        return int(op[4:]) if op.startswith("PUSH") else 0

    places: dict[str, int] = {}
    at = 0
    for item in program:
        if isinstance(item, Label):
            places[item.name] = at
        else:
            at += 1 + width(item[0] if isinstance(item, tuple) else item)
    code = bytearray()
    for item in program:
        if isinstance(item, Label):
            continue
        op, arg = item if isinstance(item, tuple) else (item, None)
        code.append(OPCODES[op])
        if arg is not None:
            value = places[arg.name] if isinstance(arg, Label) else arg
            code += value.to_bytes(width(op), "big")
    return bytes(code)


def _transfer_loop(emit: Sequence[Item]) -> bytes:
    """Runtime code: for i in 0, 96, 192, … below CALLDATASIZE, run `emit` with i on the
    stack (it must leave the stack as it found it)."""
    loop, end = Label("loop"), Label("end")
    return assemble([
        ("PUSH1", 0), loop, "JUMPDEST",
        "CALLDATASIZE", "DUP2", "LT", "ISZERO", ("PUSH2", end), "JUMPI",  # i < size?
        *emit,
        ("PUSH1", 0x60), "ADD", ("PUSH2", loop), "JUMP",
        end, "JUMPDEST", "STOP"])


TOPIC = ("PUSH32", int(TRANSFER_TOPIC, 16))

# stack [i] → LOG3(mem[0:32] = amount, topic, from, to)
ERC20_RUNTIME = _transfer_loop([
    "DUP1", ("PUSH1", 0x40), "ADD", "CALLDATALOAD", ("PUSH1", 0), "MSTORE",
    "DUP1", ("PUSH1", 0x20), "ADD", "CALLDATALOAD",  # to
    "DUP2", "CALLDATALOAD",  # from
    TOPIC, ("PUSH1", 0x20), ("PUSH1", 0), "LOG3"])

# stack [i] → LOG4(no data, topic, from, to, tokenId)
ERC721_RUNTIME = _transfer_loop([
    "DUP1", ("PUSH1", 0x40), "ADD", "CALLDATALOAD",  # token id
    "DUP2", ("PUSH1", 0x20), "ADD", "CALLDATALOAD",  # to
    "DUP3", "CALLDATALOAD",  # from
    TOPIC, ("PUSH1", 0), ("PUSH1", 0), "LOG4"])

# refuses every call, so a value sent to it stays where it was (a failed transaction)
REVERTING_RUNTIME = assemble([("PUSH1", 0), ("PUSH1", 0), "REVERT"])


def deployment(runtime: bytes) -> bytes:
    """Init code that returns `runtime` as the contract's code."""
    def init(start: int) -> bytes:
        return assemble([("PUSH1", len(runtime)), ("PUSH1", start), ("PUSH1", 0), "CODECOPY",
                         ("PUSH1", len(runtime)), ("PUSH1", 0), "RETURN"])

    return init(len(init(0))) + runtime  # the runtime starts right after the init code


def word(value: int | str) -> str:
    """A 32-byte ABI word (an address or a number) as 64 hex digits."""
    number = int(value, 16) if isinstance(value, str) else value
    return f"{number:064x}"


def calldata(transfers: Sequence[tuple[str, str, int]]) -> str:
    return "0x" + "".join(word(a) + word(b) + word(v) for a, b, v in transfers)


class Rpc(Protocol):
    async def rpc(self, method: str, params: list[Any] | None = None) -> Any: ...


async def send(node: Rpc, tx: dict[str, Any]) -> str:
    """eth_sendTransaction from a ganache-funded (unlocked) account; the tx hash."""
    tx_hash: str = await node.rpc("eth_sendTransaction", [tx])
    return tx_hash


async def receipt(node: Rpc, tx_hash: str) -> dict[str, Any]:
    answer: dict[str, Any] = await node.rpc("eth_getTransactionReceipt", [tx_hash])
    return answer


async def deploy(node: Rpc, runtime: bytes, sender: str) -> str:
    """Deploys and mines (ganache mines each transaction at once); the contract address."""
    tx_hash = await send(node, {"from": sender, "data": "0x" + deployment(runtime).hex(),
                                "gas": hex(1_000_000)})
    address: str = (await receipt(node, tx_hash))["contractAddress"]
    return address.lower()


@dataclass(frozen=True)
class TokenContract:
    """A deployed Erc20Like or Erc721Like; `emit` makes one call that logs every transfer."""

    node: Rpc
    address: str

    async def emit(self, sender: str, transfers: Sequence[tuple[str, str, int]]) -> str:
        return await send(self.node, {"from": sender, "to": self.address,
                                      "data": calldata(transfers), "gas": hex(CALL_GAS)})


async def erc20_like(node: Rpc, sender: str) -> TokenContract:
    return TokenContract(node, await deploy(node, ERC20_RUNTIME, sender))


async def erc721_like(node: Rpc, sender: str) -> TokenContract:
    return TokenContract(node, await deploy(node, ERC721_RUNTIME, sender))


async def reverting(node: Rpc, sender: str) -> str:
    return await deploy(node, REVERTING_RUNTIME, sender)


async def accounts(node: Rpc) -> list[str]:
    """ganache's funded, unlocked accounts, lower-case."""
    return [a.lower() for a in await node.rpc("eth_accounts")]


async def pay(node: Rpc, sender: str, to: str, wei: int) -> str:
    """A plain value transfer; the tx hash."""
    return await send(node, {"from": sender, "to": to, "value": hex(wei), "gas": hex(21_000)})
