"""Standard Webhooks signing, checked by the `standardwebhooks` package as a receiver would:
bodies of every sort, wrong keys, tampering, key rotation, and the secret format's bounds."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.signing import Signer, SignerCache, headers, new_secret, parse_secret, sign

BODIES = [
    json.dumps({"id": "evt_1", "type": "transfer", "data": {"value": "1.5"}}).encode(),
    json.dumps({"memo": "Grüße, 東京 🚀"}, ensure_ascii=False).encode(),  # raw UTF-8
    b"",
    json.dumps({"blob": "x" * 200_000}).encode(),
]
Tamper = Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]


def secret_of(size: int, fill: int = 7) -> str:
    return "whsec_" + base64.b64encode(bytes([fill]) * size).decode()


def verify(secret: str, body: bytes, sent: dict[str, str]) -> None:
    """Raises WebhookVerificationError unless `secret` verifies `body` under `sent`."""
    Webhook(secret).verify(body, sent, json_parse=False)


@pytest.mark.parametrize("body", BODIES, ids=["json", "non-ascii", "empty", "large"])
def test_a_receiver_verifies_every_body(body: bytes) -> None:
    secret = new_secret()
    sent = headers(parse_secret(secret), "msg_abc", int(time.time()), body)
    verify(secret, body, sent)
    assert sent["webhook-id"] == "msg_abc"
    assert sent["webhook-signature"].startswith("v1,")


def test_the_signature_equals_the_reference_implementation() -> None:
    secret, ts = new_secret(), 1_700_000_000
    body = BODIES[1]
    reference = Webhook(secret).sign("msg_1", datetime.fromtimestamp(ts, UTC), body.decode())
    assert sign(parse_secret(secret), "msg_1", ts, body) == reference
    assert Signer(secret).signature("msg_1", ts, body) == reference


def test_a_wrong_secret_fails() -> None:
    body = BODIES[0]
    sent = headers(parse_secret(new_secret()), "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), body, sent)


@pytest.mark.parametrize("tamper", [
    lambda body, sent: (body + b" ", sent),
    lambda body, sent: (body.replace(b"1.5", b"9.5"), sent),
    lambda body, sent: (body, {**sent, "webhook-id": "msg_other"}),
    lambda body, sent: (body, {**sent, "webhook-timestamp": str(int(time.time()) + 1)}),
], ids=["body-appended", "body-changed", "id-changed", "timestamp-changed"])
def test_tampering_fails(tamper: Tamper) -> None:
    secret, body = new_secret(), BODIES[0]
    sent = headers(parse_secret(secret), "msg_1", int(time.time()), body)
    changed_body, changed_headers = tamper(body, sent)
    with pytest.raises(WebhookVerificationError):
        verify(secret, changed_body, changed_headers)


@pytest.mark.parametrize("body", BODIES[:3], ids=["json", "non-ascii", "empty"])
def test_during_a_rotation_either_key_verifies(body: bytes) -> None:
    old, new = new_secret(), new_secret()
    ts = int(time.time())
    by_function = headers([parse_secret(new), parse_secret(old)], "msg_r", ts, body)
    by_signer = Signer(new, old).headers("msg_r", ts, body)
    assert by_function == by_signer
    assert len(by_signer["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        verify(secret, body, by_signer)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), body, by_signer)


def test_new_secrets_are_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(parse_secret(first)) == 32


@pytest.mark.parametrize("size", [24, 32, 64])
def test_secrets_of_24_to_64_bytes_parse(size: int) -> None:
    assert parse_secret(secret_of(size)) == bytes([7]) * size


def test_unpadded_base64_parses() -> None:
    padded = secret_of(25)
    assert padded.endswith("=")
    assert parse_secret(padded.rstrip("=")) == parse_secret(padded)


@pytest.mark.parametrize(("text", "words"), [
    (secret_of(23), "24 to 64 bytes"),
    (secret_of(65), "24 to 64 bytes"),
    ("whsec_", "24 to 64 bytes"),
    (secret_of(32)[len("whsec_"):], 'start with "whsec_"'),
    ("sk_" + secret_of(32), 'start with "whsec_"'),
    ("whsec_not*base64!secret-value", "base64"),
    ("whsec_ünicode-secret-value-here-ok", "base64"),
])
def test_a_malformed_secret_is_refused_without_quoting_it(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        parse_secret(text)
    secret_part = text.removeprefix("whsec_")
    assert not secret_part or secret_part not in str(caught.value)
    # a chained decoder error would print in a traceback, with whatever it quotes
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_headers_needs_a_key_and_signer_a_secret() -> None:
    with pytest.raises(ValueError):
        headers([], "msg_1", 1, b"")
    with pytest.raises(ValueError):
        Signer()
    with pytest.raises(ValueError, match="whsec_"):
        Signer("nope")


def test_the_cache_keeps_one_signer_per_secret_set() -> None:
    cache = SignerCache(max_size=2)
    a, b, c = new_secret(), new_secret(), new_secret()
    first = cache.get(a)
    assert cache.get(a) is first
    cache.get(b)
    cache.get(a)  # a is now the most recent, so b goes first
    cache.get(c)
    assert len(cache) == 2
    assert cache.get(a) is first
    assert cache.get(a, b) is not first  # a rotation is a different key set
    with pytest.raises(ValueError):
        SignerCache(max_size=0)
