"""Linked users: disabling, deletion and the purge that follows it."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from accounts import audit, crypto, lifecycle
from accounts.audit import Actor
from accounts.lifecycle import EventType
from accounts.models import (
    ActorType,
    AuditAction,
    AuthCode,
    AuthCodeStatus,
    DeletionRequest,
    DeletionStatus,
    LinkedUser,
    UserStatus,
)
from accounts.signals import user_deleted
from portal.errors import DomainError, ErrorCode, describe_error

log = logging.getLogger("portal.accounts")


def check_disable(user: LinkedUser, *, disabled: bool) -> None:
    """Whether `set_user_disabled(disabled=...)` would change the user (DomainError if not):
    a deleted user is neither disabled nor enabled."""
    if user.status == UserStatus.DELETED:
        raise DomainError(ErrorCode.INVALID_REQUEST, f"the user {user.user_id} is deleted")
    if user.is_disabled == disabled:
        state = "already disabled" if disabled else "not disabled"
        raise DomainError(ErrorCode.INVALID_REQUEST, f"the user {user.user_id} is {state}")


def set_user_disabled(
    *,
    user: LinkedUser,
    disabled: bool,
    actor: Actor,
    reason: str = "",
    now: dt.datetime | None = None,
) -> LinkedUser:
    """Disabling refuses redemptions and access tokens until re-enabled; nothing is lost.
    `reason`, optional free text, is kept in the audit event (see `audit.note_details`).
    A repeat changes nothing; a deleted user is refused. Returns the user as it is now."""
    now = now or timezone.now()
    details = audit.note_details(reason)
    with transaction.atomic():
        locked = (
            LinkedUser.objects.select_for_update(of=("self",)).select_related("app").get(pk=user.pk)
        )
        if locked.is_disabled == disabled and locked.status != UserStatus.DELETED:
            return locked  # a repeat
        check_disable(locked, disabled=disabled)
        locked.disabled_at = now if disabled else None
        locked.save(update_fields=["disabled_at"])
        action = AuditAction.USER_DISABLED if disabled else AuditAction.USER_ENABLED
        audit.record(audit.user_event(locked, action, actor, now, **details))
        lifecycle.record(
            _announcement(
                locked, EventType.USER_DISABLED if disabled else EventType.USER_ENABLED, now
            )
        )
    return locked


def _announcement(user: LinkedUser, type: EventType, now: dt.datetime, **data: str) -> Model | None:
    """The outbox row for `type` about `user` (app loaded), None when nobody listens."""
    return lifecycle.outbox_row(
        app=user.app,
        type=type,
        data={"user_id": user.user_id, "external_id": user.external_id, **data},
        now=now,
    )


def delete_user_of_app(*, app_id: int, user_id: str, actor: Actor) -> DeletionRequest:
    """A customer's deletion of one of its users, idempotent: a repeat answers the first
    request, also once the purge removed the user (the request outlives it). USER_NOT_FOUND
    for a user id the app never had."""
    user = LinkedUser.objects.filter(app_id=app_id, user_id=user_id).first()
    if user is not None:  # deleted or not: request_user_deletion answers a repeat under lock
        return request_user_deletion(user=user, actor=actor)
    # Gone: purged after an earlier request (looked up after the user, so that a purge
    # landing between the two reads still finds its request), or never this app's.
    deletion = DeletionRequest.objects.filter(app_id=app_id, deleted_user_id=user_id).first()
    if deletion is None:
        raise DomainError(ErrorCode.USER_NOT_FOUND)
    return deletion


def check_deletable(user: LinkedUser) -> None:
    """Whether deleting would change anything (DomainError if not). `request_user_deletion`
    itself answers a repeat with the first request, as the API promises."""
    if user.status == UserStatus.DELETED:
        raise DomainError(ErrorCode.INVALID_REQUEST, f"the user {user.user_id} is already deleted")


def request_user_deletion(
    *, user: LinkedUser, actor: Actor, now: dt.datetime | None = None
) -> DeletionRequest:
    """Makes the user unusable at once and records the request; the purge follows in the
    background (and, should the broker be down, in the scheduled sweep). Idempotent: a
    repeated request returns the first one."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            LinkedUser.objects.select_for_update(of=("self",))
            .select_related("app")
            .filter(pk=user.pk)
            .first()
        )
        existing = DeletionRequest.objects.filter(deleted_user_id=user.user_id).first()
        if existing is not None:  # a repeat, possibly racing the purge of the first one
            return existing
        if locked is None:
            raise DomainError(ErrorCode.USER_NOT_FOUND)
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
            external_id_digest=crypto.external_id_digest(locked.external_id),
            requested_by_key_id=actor.name if actor.type == ActorType.API_KEY else "",
            requested_at=now,
        )
        audit.record(
            audit.user_event(
                locked, AuditAction.USER_DELETED, actor, now, request_id=deletion.request_id
            )
        )
        lifecycle.record(
            _announcement(locked, EventType.USER_DELETED, now, request_id=deletion.request_id)
        )
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
            DeletionRequest.objects.select_for_update(of=("self",))
            .select_related("app")
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
        # The external id is gone with the user: the customer matches by user_id.
        lifecycle.record(
            lifecycle.outbox_row(
                app=deletion.app,
                type=EventType.USER_PURGED,
                data={"user_id": deletion.deleted_user_id, "request_id": deletion.request_id},
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
