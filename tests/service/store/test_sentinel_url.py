"""`redis+sentinel://` addresses of the Redis store: what they parse to, and why one is refused
(never repeating the password)."""

from __future__ import annotations

import pytest

from service.store import SentinelAddress, parse_sentinel_url, redacted


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+sentinel://h1:26379,h2:26380,h3/mymaster/0",
     SentinelAddress((("h1", 26379), ("h2", 26380), ("h3", 26379)), "mymaster", 0)),
    ("redis+sentinel://127.0.0.1/primary",
     SentinelAddress((("127.0.0.1", 26379),), "primary", 0)),
    ("redis+sentinel://:s%40cret@h1:5000/mymaster/3",
     SentinelAddress((("h1", 5000),), "mymaster", 3, None, "s@cret")),
    ("redis+sentinel://app:pw@[::1]:26379,h2/m",
     SentinelAddress((("::1", 26379), ("h2", 26379)), "m", 0, "app", "pw")),
])
def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database(
        url: str, expected: SentinelAddress) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(("url", "why"), [
    ("redis+sentinel://:pw@/m", "names no Sentinel host"),
    ("redis+sentinel://:pw@h1:26379", "the path must name the Sentinel service"),
    ("redis+sentinel://:pw@h1:0/m", "'h1:0': the port must be a number from 1 to 65535"),
    ("redis+sentinel://:pw@h1:x/m", "'h1:x': the port must be a number from 1 to 65535"),
    ("redis+sentinel://:pw@h1,:1/m", "':1' names no host"),
    ("redis+sentinel://:pw@h1/m/db", "the path must be /service_name or /service_name/<database"),
    ("redis+sentinel://:pw@h1/m/0/x", "the path must be /service_name or /service_name/<data"),
    ("redis+sentinel://:pw@h1/m?timeout=1", "takes no query or fragment"),
])
def test_a_bad_sentinel_url_is_refused_saying_why_without_the_password(
        url: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_sentinel_url(url)
    assert why in str(info.value)
    assert "pw" not in str(info.value)


def test_redacted_hides_the_password_only() -> None:
    assert redacted("redis+sentinel://app:pw@h1/m") == "redis+sentinel://app:***@h1/m"
    assert redacted("redis+sentinel://:pw@h1/m") == "redis+sentinel://:***@h1/m"
    assert redacted("redis+sentinel://h1/m") == "redis+sentinel://h1/m"
