"""API keys: creation, rotation, revocation, use, and the expiry notices."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, Model, OuterRef
from django.utils import timezone

from accounts import audit, crypto, lifecycle
from accounts.audit import Actor
from accounts.lifecycle import EventType
from accounts.models import (
    ApiKey,
    ApiKeyNotice,
    App,
    AuditAction,
    Scope,
)
from accounts.services._clock import whole_seconds
from portal.errors import DomainError, ErrorCode
from portal.text import named_choices

log = logging.getLogger("portal.accounts")


LAST_USED_PRECISION = dt.timedelta(minutes=1)
MAX_KEY_LIFETIME_DAYS = 3650
MAX_ROTATION_GRACE = dt.timedelta(days=30)


def parse_scopes(raw: Iterable[str]) -> list[str]:
    """Validates scope names, keeping the canonical order; raises DomainError on an unknown one."""
    scopes = named_choices(raw, Scope, "scope(s)")
    if not scopes:
        raise DomainError(ErrorCode.INVALID_REQUEST, "at least one scope is required")
    return scopes


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
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            f"expires_in_days must be between 1 and {MAX_KEY_LIFETIME_DAYS}",
        )
    scope_list = parse_scopes(scopes)
    with transaction.atomic():
        # Serialises the cap check. NO KEY UPDATE, like every lock on a key or app row here:
        # it does not conflict with the KEY SHARE that inserting a code referencing them takes,
        # so issuance never waits on (nor deadlocks with) a key being created or rotated.
        App.objects.select_for_update(no_key=True).filter(pk=app.pk).first()
        active = (
            ApiKey.objects.filter(app=app, revoked_at__isnull=True, expires_at__gt=now)
            .exclude(pk=rotated_from.pk if rotated_from else None)
            .count()
        )
        if active >= settings.MAX_ACTIVE_API_KEYS_PER_APP:
            raise DomainError(
                ErrorCode.INVALID_REQUEST,
                f"app {app.app_id} already has {active} active keys "
                f"(limit MAX_ACTIVE_API_KEYS_PER_APP={settings.MAX_ACTIVE_API_KEYS_PER_APP}); "
                "revoke one first",
            )
        secret = crypto.new_secret()
        api_key = ApiKey(
            app=app,
            name=name,
            scopes=scope_list,
            secret_digest=crypto.digest(secret),
            created_at=now,
            expires_at=whole_seconds(now + dt.timedelta(days=days)),
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


def check_rotatable(api_key: ApiKey, *, now: dt.datetime | None = None) -> None:
    """Only a live key that was not rotated yet can be rotated (DomainError otherwise)."""
    now = now or timezone.now()
    if api_key.revoked_at is not None:
        raise DomainError(
            ErrorCode.INVALID_REQUEST, f"key {api_key.key_id} is revoked; create a new key instead"
        )
    if api_key.expires_at <= now:
        raise DomainError(
            ErrorCode.INVALID_REQUEST, f"key {api_key.key_id} has expired; create a new key instead"
        )
    successor = ApiKey.objects.filter(rotated_from=api_key).values_list("key_id", flat=True).first()
    if successor is not None:
        raise DomainError(
            ErrorCode.INVALID_REQUEST, f"key {api_key.key_id} was already rotated to {successor}"
        )


@dataclass(frozen=True)
class Rotation:
    new: NewApiKey
    old_key: ApiKey
    """The rotated key as it is now: expiring at the end of the grace period."""


def rotate_api_key(
    *, api_key: ApiKey, grace: dt.timedelta, actor: Actor, now: dt.datetime | None = None
) -> Rotation:
    """A successor with the same app, name and scopes; the old key keeps working until
    now + grace (never longer than it would have), then expires."""
    now = now or timezone.now()
    if not dt.timedelta(0) <= grace <= MAX_ROTATION_GRACE:
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            f"the grace period must be between 0 and {MAX_ROTATION_GRACE.days} days",
        )
    with transaction.atomic():
        old = ApiKey.objects.select_for_update(no_key=True).select_related("app").get(pk=api_key.pk)
        check_rotatable(old, now=now)
        new = create_api_key(
            app=old.app, name=old.name, scopes=old.scopes, rotated_from=old, actor=actor, now=now
        )
        old.expires_at = min(old.expires_at, whole_seconds(now + grace))
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
        lifecycle.record(
            _announcement(old, EventType.API_KEY_ROTATED, now, new_key_id=new.api_key.key_id)
        )
    return Rotation(new=new, old_key=old)


def check_revocable(api_key: ApiKey) -> None:
    """Whether revoking would change anything (DomainError if not). `revoke_api_key` itself
    answers a repeat as the first revocation, so that an operator may safely retry."""
    if api_key.revoked_at is not None:
        raise DomainError(ErrorCode.INVALID_REQUEST, f"key {api_key.key_id} is already revoked")


def revoke_api_key(*, api_key: ApiKey, actor: Actor, now: dt.datetime | None = None) -> ApiKey:
    """Refused at once from then on. Revoking a revoked key changes nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        key = (
            ApiKey.objects.select_for_update(no_key=True, of=("self",))
            .select_related("app")
            .get(pk=api_key.pk)
        )
        if key.revoked_at is None:
            key.revoked_at = now
            key.save(update_fields=["revoked_at"])
            audit.record(audit.key_event(key, AuditAction.KEY_REVOKED, actor, now))
            lifecycle.record(_announcement(key, EventType.API_KEY_REVOKED, now))
    return key


def _announcement(api_key: ApiKey, type: EventType, now: dt.datetime, **data: str) -> Model | None:
    """The outbox row for `type` about `api_key` (app loaded), None when nobody listens."""
    return lifecycle.outbox_row(
        app=api_key.app,
        type=type,
        data={
            "key_id": api_key.key_id,
            "expires_at": api_key.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            **data,
        },
        now=now,
    )


def record_api_key_use(*, api_key: ApiKey, now: dt.datetime | None = None) -> None:
    """Writes last_used_at at most once a minute per key, not on every request."""
    now = now or timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_PRECISION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)


def send_key_expiry_notices(*, now: dt.datetime | None = None) -> int:
    """E-mails each app's contacts (and announces api_key.expiring to its webhooks) once
    API_KEY_REMINDER_DAYS (14 and 7) days before a key expires, and records key.expired once
    a key has expired. Every notice is recorded in the
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
        announced = lifecycle.subscribed(key.app, EventType.API_KEY_EXPIRING)
        if not key.app.contact_emails and not announced:
            continue
        try:
            with transaction.atomic():
                _, created = ApiKeyNotice.objects.get_or_create(
                    api_key=key, kind=f"{days}d", defaults={"sent_at": now}
                )
                if created:
                    lifecycle.record(_announcement(key, EventType.API_KEY_EXPIRING, now))
                if created and key.app.contact_emails:
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
