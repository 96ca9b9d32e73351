"""Standard Webhooks signing: `whsec_` secrets and the `webhook-*` headers with `v1` signatures.

Everything works on the body's bytes, so a delivery is signed exactly as it goes on the wire.
`Signer` holds one endpoint's keys ready to use; `SignerCache` keeps one per secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
NEW_KEY_BYTES = 32


def new_secret() -> str:
    """A fresh endpoint secret: "whsec_" + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(NEW_KEY_BYTES)).decode("ascii")


def parse_secret(text: str) -> bytes:
    """The key inside a `whsec_` secret; ValueError (never quoting the secret) if malformed."""
    if not isinstance(text, str) or not text.startswith(SECRET_PREFIX):
        raise ValueError(f'a secret must start with "{SECRET_PREFIX}"')
    encoded = text[len(SECRET_PREFIX):]
    # Some issuers drop the base64 padding; Standard Webhooks libraries accept that too.
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # `from None`: the decoder's own message may quote part of the secret
        raise ValueError(f'a secret must be "{SECRET_PREFIX}" followed by base64') from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"a secret must hold {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes of key "
                         f"(this one holds {len(key)})")
    return key


def _signed_prefix(msg_id: str, timestamp: int) -> bytes:
    return f"{msg_id}.{timestamp}.".encode()


def _v1(mac: hmac.HMAC) -> str:
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def sign(secret_key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}." + body>` with one key."""
    mac = hmac.new(secret_key, _signed_prefix(msg_id, timestamp), hashlib.sha256)
    mac.update(body)  # fed separately: no copy of a large body just to prepend the prefix
    return _v1(mac)


def headers(secret_key: bytes | Sequence[bytes], msg_id: str, timestamp: int,
            body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; several keys give a space-separated signature
    list, so a receiver still holding the old key verifies during a rotation."""
    keys = (secret_key,) if isinstance(secret_key, bytes) else tuple(secret_key)
    if not keys:
        raise ValueError("headers() needs at least one key")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(key, msg_id, timestamp, body) for key in keys),
    }


class Signer:
    """Signs for one endpoint. The secrets are parsed once and each key's HMAC state is kept,
    so an attempt only copies that state instead of decoding the secret and re-keying."""

    __slots__ = ("_macs",)

    def __init__(self, *secrets_: str) -> None:
        if not secrets_:
            raise ValueError("a Signer needs at least one secret")
        self._macs = tuple(hmac.new(parse_secret(s), digestmod=hashlib.sha256) for s in secrets_)

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` value: one `v1,` entry per secret, in the given order."""
        prefix = _signed_prefix(msg_id, timestamp)
        entries = []
        for keyed in self._macs:
            mac = keyed.copy()
            mac.update(prefix)
            mac.update(body)
            entries.append(_v1(mac))
        return " ".join(entries)

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(msg_id, timestamp, body),
        }


class SignerCache:
    """One `Signer` per set of secrets, least recently used dropped first. Keyed by the
    secrets themselves, so an endpoint whose secret changed gets a new Signer by itself."""

    def __init__(self, max_size: int = 10_000) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._max_size = max_size
        self._signers: OrderedDict[tuple[str, ...], Signer] = OrderedDict()

    def get(self, *secrets_: str) -> Signer:
        signer = self._signers.get(secrets_)
        if signer is not None:
            self._signers.move_to_end(secrets_)
            return signer
        signer = self._signers[secrets_] = Signer(*secrets_)
        if len(self._signers) > self._max_size:
            self._signers.popitem(last=False)
        return signer

    def __len__(self) -> int:
        return len(self._signers)
