"""A target's URL as people see it (`TargetConfig.display_url`, used by the messages, the API
and the status page): no user info, no query, and no path segment that looks like a node
provider's API key; ordinary paths stay as they are."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from monitor.config import parse
from monitor.config.targets import key_like

INFURA = "9aa3d95b3bc440fa88ea12eaa4456161"  # 32 hex digits
ALCHEMY = "Xq7_dK2-vBn9wLp4ZtR8mHc1sYf3GjE6"  # 32 of [A-Za-z0-9_-]
QUICKNODE = "4f8b2a1c9e7d3f6a0b5c8e2d1f4a7b9c3e6d0a2f"  # 40 hex digits


def shown(url: str, type_: str = "ethereum") -> str:
    text = f'[[targets]]\nname = "t"\ntype = "{type_}"\nurl = "{url}"\n'
    (target,) = parse(tomllib.loads(text), Path("/tmp/config.toml")).targets
    return target.display_url


@pytest.mark.parametrize(("url", "expected"), [
    (f"https://mainnet.infura.io/v3/{INFURA}", "https://mainnet.infura.io/v3/…"),
    (f"https://eth-mainnet.g.alchemy.com/v2/{ALCHEMY}", "https://eth-mainnet.g.alchemy.com/v2/…"),
    (f"https://x.quiknode.pro/{QUICKNODE}/", "https://x.quiknode.pro/…/"),
    (f"https://x.quiknode.pro/{QUICKNODE.upper()}/?a=b", "https://x.quiknode.pro/…/"),
    (f"https://user:pw@rpc.example:8443/{ALCHEMY}/v1/{INFURA}?key=k#f",
     "https://rpc.example:8443/…/v1/…"),
])
def test_key_like_path_segments_are_hidden(url: str, expected: str) -> None:
    assert shown(url) == expected
    for key in (INFURA, ALCHEMY, QUICKNODE, QUICKNODE.upper(), "pw", "key=k"):
        assert key not in shown(url)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/healthz", "https://status.example.com/api/v1/status",
    "https://mainnet.infura.io/v3/", "https://rpc.example/eth-mainnet-archive-node/",
    "https://rpc.example/2026-12-06/v1", "https://rpc.example/", "https://rpc.example",
    "https://rpc.example/deadbeef", "https://rpc.example/a%20b/_-_-_-_-_-_-_-_-_-",
])
def test_ordinary_paths_stay_intact(url: str) -> None:
    assert shown(url, "http") == url


def test_env_references_and_tcp_addresses_are_shown_as_written() -> None:
    assert shown("env:ETH_RPC_URL") == "env:ETH_RPC_URL"
    assert shown("tcp://127.0.0.1:5432", "tcp") == "tcp://127.0.0.1:5432"


def test_what_counts_as_a_key() -> None:
    assert key_like("a" * 32) and key_like("0" * 32)  # hex, however it looks
    assert key_like("abcdefghijklmno1") and key_like("ABCD_1234-efgh-5")  # 16 with both
    assert not key_like("abcdefghijklmn1")  # 15
    assert not key_like("abcdefghijklmnopqrstuvwxyz")  # no digit
    assert not key_like("1234567890123456")  # no letter, 16 digits
    assert not key_like("abcdefghijkl.123456")  # a dot: a file name, not a key
