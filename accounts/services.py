"""Every write on apps, keys, users and codes. Views, admin, commands and tasks call these."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from accounts import audit, crypto
from accounts.audit import Actor
from accounts.models import (
    ActorType,
    ApiKey,
    ApiKeyNotice,
    App,
    AuditAction,
    AuthCode,
    AuthCodeStatus,
    DeletionRequest,
    DeletionStatus,
    LinkedUser,
    Scope,
    UserStatus,
)
from accounts.signals import user_deleted
from portal.errors import ApiError, ErrorCode, describe_error

log = logging.getLogger("portal.accounts")

LAST_USED_PRECISION = dt.timedelta(minutes=1)
MAX_KEY_LIFETIME_DAYS = 3650
MAX_ROTATION_GRACE = dt.timedelta(days=30)


def _whole_seconds(moment: dt.datetime) -> dt.datetime:
    """Expiry times are shown to the second; store them so, and what is shown is exact."""
    return moment.replace(microsecond=0)


def create_app(
    *, name: str, contact_emails: Iterable[str] = (), sdk_config: Mapping[str, Any] | None = None
) -> App:
    app = App(
        name=name, contact_emails=_valid_emails(contact_emails), sdk_config=dict(sdk_config or {})
    )
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
    actor: Actor,
    expires_in_days: int | None = None,
    rotated_from: ApiKey | None = None,
    now: dt.datetime | None = None,
) -> NewApiKey:
    """Creates a key; refused beyond MAX_ACTIVE_API_KEYS_PER_APP active keys of the app (a
    rotation's successor does not count the key it replaces)."""
    now = now or timezone.now()
    days = settings.API_KEY_DEFAULT_EXPIRY_DAYS if expires_in_days is None else expires_in_days
    if not 1 <= days <= MAX_KEY_LIFETIME_DAYS:
        raise ValueError(f"expires_in_days must be between 1 and {MAX_KEY_LIFETIME_DAYS}")
    scope_list = parse_scopes(scopes)
    with transaction.atomic():
        App.objects.select_for_update().filter(pk=app.pk).first()  # serialise the cap check
        active = (
            ApiKey.objects.filter(app=app, revoked_at__isnull=True, expires_at__gt=now)
            .exclude(pk=rotated_from.pk if rotated_from else None)
            .count()
        )
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
        audit.record(
            audit.key_event(
                api_key, AuditAction.KEY_CREATED, actor, now, scopes=scope_list, name=name
            )
        )
    return NewApiKey(api_key=api_key, full_key=f"{api_key.key_id}.{secret}")


def rotate_api_key(
    *, api_key: ApiKey, grace: dt.timedelta, actor: Actor, now: dt.datetime | None = None
) -> NewApiKey:
    """A successor with the same app, name and scopes; the old key keeps working until
    now + grace (never longer than it would have), then expires."""
    now = now or timezone.now()
    if not dt.timedelta(0) <= grace <= MAX_ROTATION_GRACE:
        raise ValueError(f"the grace period must be between 0 and {MAX_ROTATION_GRACE.days} days")
    with transaction.atomic():
        old = ApiKey.objects.select_for_update().select_related("app").get(pk=api_key.pk)
        if old.revoked_at is not None:
            raise ValueError(f"key {old.key_id} is revoked; create a new key instead")
        if old.expires_at <= now:
            raise ValueError(f"key {old.key_id} has expired; create a new key instead")
        successor = ApiKey.objects.filter(rotated_from=old).first()
        if successor is not None:
            raise ValueError(f"key {old.key_id} was already rotated to {successor.key_id}")
        new = create_api_key(
            app=old.app, name=old.name, scopes=old.scopes, rotated_from=old, actor=actor, now=now
        )
        old.expires_at = min(old.expires_at, _whole_seconds(now + grace))
        old.save(update_fields=["expires_at"])
        audit.record(
            audit.key_event(
                old,
                AuditAction.KEY_ROTATED,
                actor,
                now,
                new_key_id=new.api_key.key_id,
                old_key_expires_at=old.expires_at.isoformat(),
            )
        )
    api_key.expires_at = old.expires_at
    return new


def revoke_api_key(*, api_key: ApiKey, actor: Actor, now: dt.datetime | None = None) -> ApiKey:
    """Refused at once from then on. Revoking a revoked key changes nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if key.revoked_at is None:
            key.revoked_at = now
            key.save(update_fields=["revoked_at"])
            audit.record(audit.key_event(key, AuditAction.KEY_REVOKED, actor, now))
    api_key.revoked_at = key.revoked_at
    return key


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


# Insert-or-get that survives concurrent first requests: the conflict target is the partial
# unique index on (app, external_id) of live users, and the no-op update makes the existing row
# come back through RETURNING, locked to the end of the transaction. A user id we generated
# coming back means the row is new. A user deleted meanwhile has left that index, so the insert
# makes a brand-new user; a deletion coming later waits for the lock, then voids the code.
_UPSERT_USER = """
    INSERT INTO accounts_linkeduser (user_id, app_id, external_id, status, created_at)
    VALUES (%(new_user_id)s, %(app)s, %(external_id)s, %(pending)s, %(now)s)
    ON CONFLICT (app_id, external_id) WHERE NOT (status = 'deleted')
    DO UPDATE SET external_id = excluded.external_id
    RETURNING id, user_id, disabled_at
"""
# PostgreSQL: the upsert and the code's insert in one statement, so one round trip and one
# commit; the insert reads the upsert's RETURNING row and skips a disabled user.
_ISSUE = f"""
    WITH linked AS ({_UPSERT_USER}),
    code AS (
        INSERT INTO accounts_authcode
            (code_digest, app_id, user_id, api_key_id, status, created_at, expires_at,
             redeemed_install_id)
        SELECT %(digest)s, %(app)s, id, %(key)s, %(issued)s, %(now)s, %(expires_at)s, ''
        FROM linked WHERE disabled_at IS NULL
        RETURNING id
    )
    SELECT linked.id, linked.user_id, linked.disabled_at, code.id
    FROM linked LEFT JOIN code ON true
"""  # noqa: S608 (built from a constant, not from input)


def issue_auth_code(
    *, api_key: ApiKey, external_id: str, now: dt.datetime | None = None
) -> IssuedCode:
    """Creates the user on the first code for an external id, restores it on later ones.

    On PostgreSQL one statement and no transaction around it, so issuance costs two round
    trips with the key check. SQLite, which knows no INSERT in WITH, runs the two parts in one
    transaction; writing one at a time, it lets nothing come between them.
    """
    now = now or timezone.now()
    code = crypto.new_secret()
    new_user_id = crypto.public_id()
    auth_code = AuthCode(
        code_digest=crypto.digest(code),
        app_id=api_key.app_id,
        api_key=api_key,
        created_at=now,
        expires_at=_whole_seconds(now) + dt.timedelta(seconds=settings.AUTH_CODE_TTL_SECONDS),
    )
    params = {
        "new_user_id": new_user_id,
        "app": api_key.app_id,
        "external_id": external_id,
        "pending": UserStatus.PENDING,
        "now": now,
        "digest": auth_code.code_digest,
        "key": api_key.pk,
        "issued": AuthCodeStatus.ISSUED,
        "expires_at": auth_code.expires_at,
    }
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_ISSUE, params)
            auth_code.user_id, user_id, disabled_at, auth_code.pk = cursor.fetchone()
            auth_code._state.adding, auth_code._state.db = False, connection.alias  # saved
        else:
            with transaction.atomic():
                cursor.execute(_UPSERT_USER, params)
                auth_code.user_id, user_id, disabled_at = cursor.fetchone()
                if disabled_at is None:
                    auth_code.save(force_insert=True)
    if disabled_at is not None:
        raise ApiError(ErrorCode.USER_DISABLED, "This user is disabled.")
    return IssuedCode(
        code=code, auth_code=auth_code, user_id=user_id, existing_user=user_id != new_user_id
    )


def set_user_disabled(
    *,
    user: LinkedUser,
    disabled: bool,
    actor: Actor,
    reason: str = "",
    now: dt.datetime | None = None,
) -> None:
    """Disabling refuses redemptions and access tokens until re-enabled; nothing is lost.
    `reason`, optional free text, is kept in the audit event (see `audit.note_details`)."""
    now = now or timezone.now()
    details = audit.note_details(reason)
    with transaction.atomic():
        changed = (
            LinkedUser.objects.filter(pk=user.pk, disabled_at__isnull=disabled)
            .exclude(status=UserStatus.DELETED)
            .update(disabled_at=now if disabled else None)
        )
        if changed:
            action = AuditAction.USER_DISABLED if disabled else AuditAction.USER_ENABLED
            audit.record(audit.user_event(user, action, actor, now, **details))
    user.disabled_at = LinkedUser.objects.values_list("disabled_at", flat=True).get(pk=user.pk)


def delete_user_of_app(*, app_id: int, user_id: str, actor: Actor) -> DeletionRequest:
    """A customer's deletion of one of its users, idempotent: a repeat answers the first
    request, also once the purge removed the user (the request outlives it). USER_NOT_FOUND
    for a user id the app never had."""
    deletion = DeletionRequest.objects.filter(app_id=app_id, deleted_user_id=user_id).first()
    if deletion is not None:
        return deletion
    user = LinkedUser.objects.filter(app_id=app_id, user_id=user_id).first()
    if user is None:
        raise ApiError(ErrorCode.USER_NOT_FOUND, "No such user in this app.")
    return request_user_deletion(user=user, actor=actor)


def request_user_deletion(
    *, user: LinkedUser, actor: Actor, now: dt.datetime | None = None
) -> DeletionRequest:
    """Makes the user unusable at once and records the request; the purge follows in the
    background (and, should the broker be down, in the scheduled sweep). Idempotent: a
    repeated request returns the first one."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = LinkedUser.objects.select_for_update().filter(pk=user.pk).first()
        existing = DeletionRequest.objects.filter(deleted_user_id=user.user_id).first()
        if existing is not None:  # a repeat, possibly racing the purge of the first one
            return existing
        if locked is None:
            raise ApiError(ErrorCode.USER_NOT_FOUND, "No such user in this app.")
        locked.status, locked.deleted_at = UserStatus.DELETED, now
        locked.save(update_fields=["status", "deleted_at"])
        # Codes already expired are the sweep's; leaving them alone keeps the two from ever
        # locking the same rows in different orders.
        AuthCode.objects.filter(
            user=locked, status=AuthCodeStatus.ISSUED, expires_at__gt=now
        ).update(status=AuthCodeStatus.VOID)
        user_deleted.send(sender=LinkedUser, user=locked, now=now)
        deletion = DeletionRequest.objects.create(
            app_id=locked.app_id,
            user=locked,
            deleted_user_id=locked.user_id,
            requested_by_key_id=actor.name if actor.type == ActorType.API_KEY else "",
            requested_at=now,
        )
        audit.record(
            audit.user_event(
                locked, AuditAction.USER_DELETED, actor, now, request_id=deletion.request_id
            )
        )
    user.status, user.deleted_at = locked.status, locked.deleted_at
    log.info("user %s deleted (deletion %s)", user.user_id, deletion.request_id)
    transaction.on_commit(lambda: _enqueue_purge(deletion.request_id))
    return deletion


def _enqueue_purge(request_id: str) -> None:
    from accounts.tasks import purge_deleted_user as purge_deleted_user_task

    try:
        purge_deleted_user_task.delay(request_id)
    except Exception as exc:
        # Not lost: the deletion sweep picks up every request still pending.
        log.warning(
            "could not enqueue the purge of deletion %s (%s: %s); the deletion sweep will",
            request_id,
            exc.__class__.__name__,
            describe_error(exc),
        )


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
        log.info(
            "purged the data of deleted user %s (deletion %s)",
            deletion.deleted_user_id,
            deletion.request_id,
        )
        audit.record(
            audit.event(
                actor=Actor.system("purge_deleted_user"),
                action=AuditAction.USER_PURGED,
                target_type="user",
                target_id=deletion.deleted_user_id,
                app_id=deletion.app_id,
                user_ref=deletion.deleted_user_id,
                details={"request_id": deletion.request_id},
                now=now,
            )
        )
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


@dataclass(frozen=True)
class SweepResult:
    expired: int
    purged: int


def sweep_auth_codes(
    *,
    now: dt.datetime | None = None,
    batch_size: int | None = None,
    retention: dt.timedelta | None = None,
) -> SweepResult:
    """Deletes codes that expired longer than the retention period ago, then marks the
    remaining expired ones `expired`. Both in bounded batches, each its own short statement
    driven by an index on expires_at: no table lock, no rows loaded into Python. Redemption
    checks expires_at itself, so it is right whether or not this has run."""
    now = now or timezone.now()
    batch_size = batch_size or settings.AUTH_CODE_SWEEP_BATCH_SIZE
    retention = settings.AUTH_CODE_RETENTION if retention is None else retention

    def in_batches(step: Callable[[], int]) -> int:
        total = 0
        while (done := step()) > 0:
            total += done
            if done < batch_size:
                break
        return total

    def purge_batch() -> int:
        batch = AuthCode.objects.filter(expires_at__lte=now - retention).order_by("expires_at")
        deleted, _ = AuthCode.objects.filter(
            pk__in=Subquery(batch.values("pk")[:batch_size])
        ).delete()
        return deleted

    def expire_batch() -> int:
        # Row locks taken by the batch's own SELECT (rechecking its filter on rows that changed
        # meanwhile) make repeating the filter outside unnecessary; SKIP LOCKED lets a second
        # sweep running at once take other rows instead of waiting.
        batch = (
            AuthCode.objects.filter(status=AuthCodeStatus.ISSUED, expires_at__lte=now)
            .order_by("expires_at")
            .select_for_update(skip_locked=True)
            .values("pk")[:batch_size]
        )
        with transaction.atomic(savepoint=False):
            return AuthCode.objects.filter(pk__in=Subquery(batch)).update(
                status=AuthCodeStatus.EXPIRED
            )

    purged = in_batches(purge_batch)
    expired = in_batches(expire_batch)
    return SweepResult(expired=expired, purged=purged)


def send_key_expiry_notices(*, now: dt.datetime | None = None) -> int:
    """E-mails each app's contacts once API_KEY_REMINDER_DAYS (14 and 7) days before a key
    expires, and records key.expired once a key has expired. Every notice is recorded in the
    same transaction as its e-mail is sent, so a rerun (or a second run at the same time)
    sends nothing twice; a failed send is logged, rolled back and retried by the next run,
    and does not hold up the other keys."""
    now = now or timezone.now()
    thresholds = sorted(settings.API_KEY_REMINDER_DAYS)
    live = ApiKey.objects.filter(revoked_at__isnull=True).exclude(
        Exists(ApiKey.objects.filter(rotated_from=OuterRef("pk")))  # replaced on purpose
    )
    sent = 0
    expiring = live.filter(
        expires_at__gt=now, expires_at__lte=now + dt.timedelta(days=thresholds[-1])
    ).select_related("app")
    for key in expiring:  # the keys of the next 14 days: few
        days = next(d for d in thresholds if key.expires_at - now <= dt.timedelta(days=d))
        if not key.app.contact_emails:
            continue
        try:
            with transaction.atomic():
                _, created = ApiKeyNotice.objects.get_or_create(
                    api_key=key, kind=f"{days}d", defaults={"sent_at": now}
                )
                if created:
                    _send_expiry_mail(key, now)
                    sent += 1
        except Exception:
            log.exception("expiry notice for key %s not sent; the next run retries", key.key_id)
    newly_expired = live.filter(expires_at__lte=now).exclude(
        Exists(ApiKeyNotice.objects.filter(api_key=OuterRef("pk"), kind="expired"))
    )
    for key in newly_expired:
        with transaction.atomic():
            _, created = ApiKeyNotice.objects.get_or_create(
                api_key=key, kind="expired", defaults={"sent_at": now}
            )
            if created:
                audit.record(
                    audit.key_event(
                        key, AuditAction.KEY_EXPIRED, Actor.system("key_expiry"), key.expires_at
                    )
                )
    return sent


def _send_expiry_mail(key: ApiKey, now: dt.datetime) -> None:
    expires = key.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    days = math.ceil((key.expires_at - now) / dt.timedelta(days=1))
    send_mail(
        subject=(
            f"[portal] API key {key.key_id} of {key.app.name} expires in "
            f"{days} day{'s' if days != 1 else ''}"
        ),
        message=(
            f"The API key '{key.name}' ({key.key_id}) of the app {key.app.name} "
            f"({key.app.app_id}) expires on {expires}.\n\n"
            "Requests with it will be refused from then on. Ask your portal operator to "
            "rotate it (rotate_api_key): the new key works at once and the old one keeps "
            "working for a grace period, so you can switch without downtime.\n"
        ),
        from_email=None,
        recipient_list=key.app.contact_emails,
    )


def update_app(
    *,
    app: App,
    actor: Actor,
    name: str | None = None,
    is_active: bool | None = None,
    contact_emails: Iterable[str] | None = None,
    sdk_config: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> App:
    """Changes what staff may change about an app (None leaves a field as it is). The audit
    event names the changed fields, not their values: contact e-mails are personal data and
    the SDK configuration can be large."""
    now = now or timezone.now()
    wanted: dict[str, Any] = {"name": name, "is_active": is_active}
    if contact_emails is not None:
        wanted["contact_emails"] = _valid_emails(contact_emails)
    if sdk_config is not None:
        if not isinstance(sdk_config, Mapping):
            raise ValueError("the SDK configuration must be a JSON object")
        wanted["sdk_config"] = dict(sdk_config)
    with transaction.atomic():
        locked = App.objects.select_for_update().get(pk=app.pk)
        changed = [
            field
            for field, value in wanted.items()
            if value is not None and getattr(locked, field) != value
        ]
        for field in changed:
            setattr(locked, field, wanted[field])
        if changed:
            locked.full_clean()
            locked.save(update_fields=changed)
            audit.record(
                audit.event(
                    actor=actor,
                    action=AuditAction.APP_UPDATED,
                    target_type="app",
                    target_id=locked.app_id,
                    app_id=locked.pk,
                    details={"fields": changed},
                    now=now,
                )
            )
    for field in changed:
        setattr(app, field, getattr(locked, field))
    return locked


def _valid_emails(emails: Iterable[str]) -> list[str]:
    unique = list(dict.fromkeys(email.strip() for email in emails if email.strip()))
    for email in unique:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise ValueError(f"not an e-mail address: {email!r}") from exc
    return unique
