"""Reads shared by more than one caller."""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts import crypto
from accounts.models import (
    ApiKey,
    App,
    AuditAction,
    AuditEvent,
    AuthCode,
    AuthCodeStatus,
    DeletionRequest,
    LinkedUser,
)
from portal.db import rows
from portal.errors import DomainError, ErrorCode

_API_KEY = re.compile(r"^([0-9a-f]{16})\.([A-Za-z0-9_-]{20,128})\Z")
PUBLIC_ID = re.compile(r"^[0-9a-f]{24}\Z")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}
# The key check's one statement: the key and what the check needs of its app (not the app's
# JSON columns; the event types its webhooks want, so issuance knows whether to announce a new
# user without asking), written once as text (compiling the ORM's select_related costs more CPU than
# PostgreSQL spends answering; see portal.db.rows).
_KEY_BY_ID = f"""
    SELECT {rows.columns(ApiKey, "k")}, a.app_id, a.is_active, a.webhook_events
    FROM accounts_apikey k JOIN accounts_app a ON a.id = k.app_id
    WHERE k.key_id = %s
"""  # noqa: S608 (column names from the model, the key id bound)


def _api_key_by_id(key_id: str) -> ApiKey | None:
    row = rows.fetch_one(_KEY_BY_ID, [key_id])
    if row is None:
        return None
    *key_values, app_id, is_active, webhook_events = row
    api_key = rows.instance(ApiKey, key_values)
    api_key.app = App.from_db(
        connection.alias,
        ["id", "app_id", "is_active", "webhook_events"],
        [api_key.app_id, app_id, bool(is_active), webhook_events],
    )
    return api_key


class KeyCheckFailed(DomainError):
    """INVALID_API_KEY, knowing whether the key id named an existing key (`existing_key_id`):
    failures are limited per key id for those, per client address for the others."""

    def __init__(self, message: str | None = None, *, existing_key_id: str | None = None) -> None:
        super().__init__(ErrorCode.INVALID_API_KEY, message, headers=CHALLENGE)
        self.existing_key_id = existing_key_id


def api_key_for(raw: str, *, now: dt.datetime | None = None) -> ApiKey:
    """The key that `<key_id>.<secret>` names, verified: one indexed lookup, one SHA-256,
    one constant-time comparison. Expiry and revocation are told apart only after the secret
    matched, so they reveal nothing to someone who merely knows a key id."""
    match = _API_KEY.match(raw)
    if match is None:
        raise KeyCheckFailed("Malformed API key.")
    key_id, secret = match.groups()
    api_key = _api_key_by_id(key_id)
    if api_key is None:
        raise KeyCheckFailed()
    if not crypto.matches(secret, api_key.secret_digest):
        raise KeyCheckFailed(existing_key_id=key_id)
    now = now or timezone.now()
    if api_key.revoked_at is not None and api_key.revoked_at <= now:
        raise DomainError(ErrorCode.API_KEY_REVOKED, headers=CHALLENGE)
    if api_key.expires_at <= now:
        raise DomainError(ErrorCode.API_KEY_EXPIRED, headers=CHALLENGE)
    if not api_key.app.is_active:
        raise DomainError(ErrorCode.APP_DISABLED)
    return api_key


class KeyStatus(StrEnum):
    ACTIVE = "active"
    IN_GRACE = "in grace"
    EXPIRED = "expired"
    REVOKED = "revoked"


def api_key_status(api_key: ApiKey, *, rotated: bool, now: dt.datetime | None = None) -> KeyStatus:
    """`rotated`: the key has a successor, so it is living out its grace period."""
    now = now or timezone.now()
    if api_key.revoked_at is not None and api_key.revoked_at <= now:
        return KeyStatus.REVOKED
    if api_key.expires_at <= now:
        return KeyStatus.EXPIRED
    return KeyStatus.IN_GRACE if rotated else KeyStatus.ACTIVE


def api_keys_with_rotation(queryset: QuerySet[ApiKey] | None = None) -> QuerySet[ApiKey]:
    """Keys annotated with `rotated` (has a successor), with their app, for listings."""
    queryset = ApiKey.objects.all() if queryset is None else queryset
    return queryset.select_related("app").annotate(
        rotated=Exists(ApiKey.objects.filter(rotated_from=OuterRef("pk")))
    )


def api_key_by_key_id(key_id: str) -> ApiKey:
    api_key = ApiKey.objects.select_related("app").filter(key_id=key_id).first()
    if api_key is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"no API key with key_id {key_id!r}")
    return api_key


def key_status_filter(status: KeyStatus, now: dt.datetime) -> Q:
    """`api_key_status` as a filter, for keys annotated by `api_keys_with_rotation`."""
    revoked = Q(revoked_at__lte=now)
    if status == KeyStatus.REVOKED:
        return revoked
    if status == KeyStatus.EXPIRED:
        return ~revoked & Q(expires_at__lte=now)
    return ~revoked & Q(expires_at__gt=now, rotated=status == KeyStatus.IN_GRACE)


def deletion_of_app(*, app_id: int, request_id: str) -> DeletionRequest:
    """The app's deletion request with this id. Another app's is as unknown as a made-up id."""
    deletion = (
        DeletionRequest.objects.filter(app_id=app_id, request_id=request_id).first()
        if PUBLIC_ID.match(request_id)
        else None
    )
    if deletion is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such deletion request in this app.")
    return deletion


def how_disabled(user: LinkedUser, *, with_who: bool = True) -> dict[str, Any]:
    """Since when a disabled user is disabled and, `with_who`, by whom and why: the last
    user.disabled event, one indexed query (none without `with_who`)."""
    event = None
    if with_who:
        event = (
            AuditEvent.objects.filter(user_ref=user.user_id, action=AuditAction.USER_DISABLED)
            .order_by("-occurred_at", "-id")
            .only("actor_type", "actor", "details")
            .first()
        )
    return {
        "since": user.disabled_at,
        "by": f"{event.get_actor_type_display()} {event.actor}".strip() if event else "",
        "reason": event.details.get("note", "") if event else "",
    }


def recent_codes(
    user: LinkedUser, *, limit: int, more: tuple[str, ...] = (), now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """The user's last `limit` codes, newest first, by the (user, -created_at) index: status
    (an issued code past its expiry shows as expired) and times, plus the `more` columns.
    Selected column by column, so neither a code nor its digest is ever loaded."""
    now = now or timezone.now()
    codes = list(
        AuthCode.objects.filter(user=user)
        .order_by("-created_at")
        .values("status", "created_at", "expires_at", "redeemed_at", *more)[:limit]
    )
    for code in codes:
        if code["status"] == AuthCodeStatus.ISSUED and code["expires_at"] <= now:
            code["status"] = AuthCodeStatus.EXPIRED
    return codes
