"""Generation, digests and constant-time checks for every identifier and secret.

Secrets carry 256 bits from `secrets`; only their SHA-256 digest is stored. A fast hash is
right here: the inputs are random, so there is nothing for a slow password hasher to protect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

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
