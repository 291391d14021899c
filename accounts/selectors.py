"""Reads shared by more than one caller."""

from __future__ import annotations

import datetime as dt
import re

from django.utils import timezone

from accounts import crypto
from accounts.models import ApiKey
from portal.errors import ApiError, ErrorCode

_API_KEY = re.compile(r"^([0-9a-f]{16})\.([A-Za-z0-9_-]{20,128})$")
PUBLIC_ID = re.compile(r"^[0-9a-f]{24}$")


def api_key_for(raw: str, *, now: dt.datetime | None = None) -> ApiKey:
    """The key that `<key_id>.<secret>` names, verified: one indexed lookup, one SHA-256,
    one constant-time comparison. Expiry and revocation are told apart only after the secret
    matched, so they reveal nothing to someone who merely knows a key id."""
    match = _API_KEY.match(raw)
    if match is None:
        raise ApiError(ErrorCode.INVALID_API_KEY, "Malformed API key.", headers=_CHALLENGE)
    key_id, secret = match.groups()
    try:
        api_key = ApiKey.objects.select_related("app").get(key_id=key_id)
    except ApiKey.DoesNotExist:
        api_key = None
    if api_key is None or not crypto.matches(secret, api_key.secret_digest):
        raise ApiError(ErrorCode.INVALID_API_KEY, "Unknown API key.", headers=_CHALLENGE)
    now = now or timezone.now()
    if api_key.revoked_at is not None and api_key.revoked_at <= now:
        raise ApiError(ErrorCode.API_KEY_REVOKED, "This API key was revoked.", headers=_CHALLENGE)
    if api_key.expires_at <= now:
        raise ApiError(ErrorCode.API_KEY_EXPIRED, "This API key has expired.", headers=_CHALLENGE)
    if not api_key.app.is_active:
        raise ApiError(ErrorCode.APP_DISABLED, "This app is disabled.")
    return api_key


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}
