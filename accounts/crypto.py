"""Generation, digests and constant-time checks for every identifier and secret.

Secrets carry 256 bits from `secrets`; only their SHA-256 digest is stored. A fast hash is
right here: the inputs are random, so there is nothing for a slow password hasher to protect.
Identifiers that are not random (a customer's external id) are kept only as a keyed digest,
which nobody without SECRET_KEY can compute, so cannot test guesses against.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.utils.crypto import salted_hmac

SECRET_BYTES = 32


def public_id() -> str:
    """`app_id` / `user_id`: 24 random lowercase hex characters, never the primary key."""
    return secrets.token_hex(12)


def key_id() -> str:
    """The public, 16 hex character handle of an API key (its lookup prefix)."""
    return secrets.token_hex(8)


def new_secret() -> str:
    """A URL-safe secret of 256 bits (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)


def keyed_digest(value: str, *, purpose: str, secret: str | None = None) -> str:
    """HMAC-SHA256 of `value` under a key derived from SECRET_KEY (or `secret`) and
    `purpose`, so that a digest made for one purpose is worth nothing for another."""
    return salted_hmac(
        f"portal.{purpose}", value.encode("utf-8", "surrogatepass"), secret, algorithm="sha256"
    ).hexdigest()


EXTERNAL_ID_PURPOSE = "external_id"


def external_id_digest(external_id: str) -> str:
    """What a deletion request keeps of the deleted user's external id."""
    return keyed_digest(external_id, purpose=EXTERNAL_ID_PURPOSE)


def external_id_digests(external_id: str) -> list[str]:
    """The digests `external_id` may be stored under: with SECRET_KEY and with each key of
    SECRET_KEY_FALLBACKS, so that a rotated key keeps older requests findable for as long as
    the old key stays a fallback."""
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return [keyed_digest(external_id, purpose=EXTERNAL_ID_PURPOSE, secret=key) for key in keys]
