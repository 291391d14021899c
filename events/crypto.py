"""The signing secrets of webhook endpoints: generation, encryption at rest, signatures.

A signing secret must be available in clear to sign, so unlike every other secret of the
portal it cannot be kept as a digest: it is encrypted with Fernet (AES-128-CBC and
HMAC-SHA256). The keys are WEBHOOK_ENCRYPTION_KEY (a list: the first encrypts, all decrypt,
so a new key can be put first and the old one kept until `reencrypt_webhook_secrets` has run)
or, when unset, one derived from SECRET_KEY (and SECRET_KEY_FALLBACKS, which decrypt)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from portal.errors import DomainError, ErrorCode

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


class KeyUnusable(DomainError):
    """The operator's key settings cannot encrypt or decrypt a signing secret
    (INTERNAL_ERROR): a delivery records it as a failed attempt and retries, it never sends
    unsigned and never blames the receiver."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERNAL_ERROR, message)


def new_signing_secret() -> str:
    """`whsec_` and 32 random bytes, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _derived_key(secret_key: str) -> bytes:
    material = hashlib.sha256(f"portal.webhook-secrets:{secret_key}".encode()).digest()
    return base64.urlsafe_b64encode(material)


@cache
def _fernet(keys: tuple[str, ...], secret_keys: tuple[str, ...]) -> MultiFernet:
    if keys:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    return MultiFernet([Fernet(_derived_key(key)) for key in secret_keys])


def _current() -> MultiFernet:
    try:
        return _fernet(
            tuple(settings.WEBHOOK_ENCRYPTION_KEY),
            (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS),
        )
    except ValueError as exc:
        raise KeyUnusable(
            "WEBHOOK_ENCRYPTION_KEY holds a value that is not a Fernet key (32 bytes, URL-safe "
            "base64)"
        ) from exc


def encrypt(secret: str) -> str:
    return _current().encrypt(secret.encode()).decode()


_UNDECRYPTABLE = (
    "a webhook signing secret cannot be decrypted: WEBHOOK_ENCRYPTION_KEY (or SECRET_KEY) no "
    "longer holds the key it was encrypted with"
)


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise KeyUnusable(_UNDECRYPTABLE) from exc


def reencrypt(token: str) -> str:
    """The same secret under the first (current) key."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise KeyUnusable(_UNDECRYPTABLE) from exc


def signature(secrets_in_use: list[str], timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, one v1 per secret (two while
    a rotated secret overlaps with its successor)."""
    signed = str(timestamp).encode() + b"." + body
    parts = [f"t={timestamp}"] + [
        "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        for secret in secrets_in_use
    ]
    return ",".join(parts)
