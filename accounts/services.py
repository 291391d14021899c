"""Every write on apps, keys, users and codes. Views, admin, commands and tasks call these."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.utils import timezone

from accounts import crypto
from accounts.models import (
    ApiKey,
    App,
    AuthCode,
    AuthCodeStatus,
    DeletionRequest,
    DeletionStatus,
    LinkedUser,
    Scope,
    UserStatus,
)
from accounts.signals import user_deleted
from portal.errors import ApiError, ErrorCode

log = logging.getLogger("portal.accounts")

LAST_USED_PRECISION = dt.timedelta(minutes=1)


def _whole_seconds(moment: dt.datetime) -> dt.datetime:
    """Expiry times are shown to the second; store them so, and what is shown is exact."""
    return moment.replace(microsecond=0)


def create_app(
    *, name: str, contact_emails: Iterable[str] = (), sdk_config: Mapping[str, Any] | None = None
) -> App:
    emails = list(dict.fromkeys(contact_emails))
    for email in emails:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise ValueError(f"not an e-mail address: {email!r}") from exc
    app = App(name=name, contact_emails=emails, sdk_config=dict(sdk_config or {}))
    app.full_clean()
    app.save()
    return app


def parse_scopes(raw: Iterable[str]) -> list[str]:
    """Validates scope names, keeping the canonical order; raises ValueError on an unknown one."""
    wanted = {scope.strip() for scope in raw if scope.strip()}
    unknown = wanted - set(Scope.values)
    if unknown:
        raise ValueError(
            f"unknown scope(s): {', '.join(sorted(unknown))}; known: {', '.join(Scope.values)}"
        )
    if not wanted:
        raise ValueError("at least one scope is required")
    return [scope for scope in Scope.values if scope in wanted]


@dataclass(frozen=True)
class NewApiKey:
    api_key: ApiKey
    full_key: str
    """`<key_id>.<secret>`: shown once, never stored."""


def create_api_key(
    *,
    app: App,
    name: str,
    scopes: Iterable[str],
    expires_in_days: int | None = None,
    rotated_from: ApiKey | None = None,
    now: dt.datetime | None = None,
) -> NewApiKey:
    """Creates a key; refused beyond MAX_ACTIVE_API_KEYS_PER_APP active keys of the app."""
    now = now or timezone.now()
    days = settings.API_KEY_DEFAULT_EXPIRY_DAYS if expires_in_days is None else expires_in_days
    if days < 1:
        raise ValueError("expires_in_days must be at least 1")
    scope_list = parse_scopes(scopes)
    with transaction.atomic():
        App.objects.select_for_update().filter(pk=app.pk).first()  # serialise the cap check
        active = ApiKey.objects.filter(app=app, revoked_at__isnull=True, expires_at__gt=now).count()
        if active >= settings.MAX_ACTIVE_API_KEYS_PER_APP:
            raise ValueError(
                f"app {app.app_id} already has {active} active keys "
                f"(limit MAX_ACTIVE_API_KEYS_PER_APP={settings.MAX_ACTIVE_API_KEYS_PER_APP}); "
                "revoke one first"
            )
        secret = crypto.new_secret()
        api_key = ApiKey(
            app=app,
            name=name,
            scopes=scope_list,
            secret_digest=crypto.digest(secret),
            created_at=now,
            expires_at=_whole_seconds(now + dt.timedelta(days=days)),
            rotated_from=rotated_from,
        )
        api_key.full_clean()
        api_key.save()
    return NewApiKey(api_key=api_key, full_key=f"{api_key.key_id}.{secret}")


def record_api_key_use(*, api_key: ApiKey, now: dt.datetime | None = None) -> None:
    """Writes last_used_at at most once a minute per key, not on every request."""
    now = now or timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_PRECISION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


@dataclass(frozen=True)
class IssuedCode:
    code: str
    """The secret itself: returned once, only its digest is stored."""
    auth_code: AuthCode
    user_id: str
    existing_user: bool


# Insert-or-get in one statement that survives concurrent first requests: the conflict target
# is the partial unique index on (app, external_id) of live users, and the no-op update makes
# the existing row come back through RETURNING. A user id we generated coming back means the
# row is new. PostgreSQL and SQLite both speak this dialect.
_UPSERT_USER = """
    INSERT INTO accounts_linkeduser (user_id, app_id, external_id, status, created_at)
    VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (app_id, external_id) WHERE NOT (status = 'deleted')
    DO UPDATE SET external_id = excluded.external_id
    RETURNING id, user_id, disabled_at
"""


def issue_auth_code(
    *, api_key: ApiKey, external_id: str, now: dt.datetime | None = None
) -> IssuedCode:
    """Creates the user on the first code for an external id, restores it on later ones."""
    now = now or timezone.now()
    new_user_id = crypto.public_id()
    code = crypto.new_secret()
    # Two statements, each atomic on its own, and no transaction around them: a user left
    # without a code (the insert failing) is the same state as a user whose code expired,
    # and a retry restores it. That keeps issuance at three round trips with the key check.
    with connection.cursor() as cursor:
        cursor.execute(
            _UPSERT_USER, [new_user_id, api_key.app_id, external_id, UserStatus.PENDING, now]
        )
        user_pk, user_id, disabled_at = cursor.fetchone()
    if disabled_at is not None:
        raise ApiError(ErrorCode.USER_DISABLED, "This user is disabled.")
    auth_code = AuthCode.objects.create(
        code_digest=crypto.digest(code),
        app_id=api_key.app_id,
        user_id=user_pk,
        api_key=api_key,
        created_at=now,
        expires_at=_whole_seconds(now) + dt.timedelta(seconds=settings.AUTH_CODE_TTL_SECONDS),
    )
    return IssuedCode(
        code=code, auth_code=auth_code, user_id=user_id, existing_user=user_id != new_user_id
    )


def set_user_disabled(*, user: LinkedUser, disabled: bool, now: dt.datetime | None = None) -> None:
    """Disabling refuses redemptions and access tokens until re-enabled; nothing is lost."""
    now = now or timezone.now()
    LinkedUser.objects.filter(pk=user.pk).update(disabled_at=now if disabled else None)
    user.disabled_at = now if disabled else None


def request_user_deletion(
    *, user: LinkedUser, requested_by_key_id: str = "", now: dt.datetime | None = None
) -> DeletionRequest:
    """Makes the user unusable at once and records the request; the purge follows in the
    background (and, should the broker be down, in the scheduled sweep). Idempotent: a
    repeated request returns the first one."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = LinkedUser.objects.select_for_update().get(pk=user.pk)
        existing = DeletionRequest.objects.filter(deleted_user_id=locked.user_id).first()
        if existing is not None:
            return existing
        locked.status, locked.deleted_at = UserStatus.DELETED, now
        locked.save(update_fields=["status", "deleted_at"])
        AuthCode.objects.filter(user=locked, status=AuthCodeStatus.ISSUED).update(
            status=AuthCodeStatus.VOID
        )
        user_deleted.send(sender=LinkedUser, user=locked, now=now)
        deletion = DeletionRequest.objects.create(
            app_id=locked.app_id,
            user=locked,
            deleted_user_id=locked.user_id,
            requested_by_key_id=requested_by_key_id,
            requested_at=now,
        )
    user.status, user.deleted_at = locked.status, locked.deleted_at
    transaction.on_commit(lambda: _enqueue_purge(deletion.request_id))
    return deletion


def _enqueue_purge(request_id: str) -> None:
    from accounts.tasks import purge_deleted_user

    try:
        purge_deleted_user.delay(request_id)
    except Exception:
        # Not lost: the deletion sweep picks up every request still pending.
        log.exception("could not enqueue the purge of deletion %s", request_id)


def purge_deleted_user(*, request_id: str, now: dt.datetime | None = None) -> bool:
    """Removes the user's rows (codes and devices go with it) and closes the request.
    Safe to run twice at once: the request row is locked and only a pending one is purged."""
    now = now or timezone.now()
    with transaction.atomic():
        deletion = (
            DeletionRequest.objects.select_for_update()
            .filter(request_id=request_id, status=DeletionStatus.PENDING)
            .first()
        )
        if deletion is None:
            return False
        if deletion.user_id is not None:
            LinkedUser.objects.filter(pk=deletion.user_id).delete()
        deletion.user = None
        deletion.status, deletion.completed_at = DeletionStatus.DONE, now
        deletion.save(update_fields=["user", "status", "completed_at"])
    return True


def pending_deletions(*, older_than: dt.timedelta, now: dt.datetime | None = None) -> list[str]:
    now = now or timezone.now()
    return list(
        DeletionRequest.objects.filter(
            status=DeletionStatus.PENDING, requested_at__lte=now - older_than
        )
        .order_by("requested_at")
        .values_list("request_id", flat=True)[:1000]
    )
