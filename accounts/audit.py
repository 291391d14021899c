"""Building audit events. Services add them to the same transaction as the change they
describe, in one INSERT per operation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from accounts.models import ActorType, ApiKey, App, AuditAction, AuditEvent, LinkedUser
from portal.errors import DomainError, ErrorCode
from portal.text import has_forbidden_characters

MAX_NOTE_LENGTH = 500
"""Enough for "customer reported the phone stolen, ticket 4711"; a bounded audit row."""


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff user, a console member, an API key, a device, an operator's command
    or a job."""

    type: ActorType
    name: str = ""

    @classmethod
    def staff(cls, username: str) -> Actor:
        return cls(ActorType.STAFF, username)

    @classmethod
    def api_key(cls, key_id: str) -> Actor:
        return cls(ActorType.API_KEY, key_id)

    @classmethod
    def device(cls, install_id: str) -> Actor:
        return cls(ActorType.DEVICE, install_id)

    @classmethod
    def console(cls, email: str) -> Actor:
        return cls(ActorType.CONSOLE, email)

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls(ActorType.SYSTEM, job)

    @classmethod
    def operator(cls, command: str) -> Actor:
        return cls(ActorType.OPERATOR, command)


def note_details(note: str) -> dict[str, str]:
    """The optional free-text reason staff give for a decision, as audit details: support
    reading the timeline later needs the why, not only the what. Plain text on one line, at
    most MAX_NOTE_LENGTH characters; blank means none. Raises DomainError otherwise."""
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_REQUEST, f"the reason must be at most {MAX_NOTE_LENGTH} characters"
        )
    if has_forbidden_characters(note):
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            "the reason must not contain control characters (line breaks, tabs)",
        )
    return {"note": note} if note else {}


def event(
    *,
    actor: Actor,
    action: AuditAction,
    target_type: str,
    target_id: str,
    app_id: int | None,
    user_ref: str = "",
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> AuditEvent:
    """An unsaved event; save it with `record`."""
    return AuditEvent(
        occurred_at=now or timezone.now(),
        app_id=app_id,
        actor_type=actor.type,
        actor=actor.name[:150],
        action=action,
        target_type=target_type,
        target_id=target_id,
        user_ref=user_ref,
        details=details or {},
    )


def user_event(
    user: LinkedUser, action: AuditAction, actor: Actor, now: dt.datetime, **details: Any
) -> AuditEvent:
    return event(
        actor=actor,
        action=action,
        target_type="user",
        target_id=user.user_id,
        app_id=user.app_id,
        user_ref=user.user_id,
        details=details,
        now=now,
    )


def app_event(app: App, actor: Actor, now: dt.datetime, **details: Any) -> AuditEvent:
    """`app.updated`: what changed of an app (the details say which fields, and how)."""
    return event(
        actor=actor,
        action=AuditAction.APP_UPDATED,
        target_type="app",
        target_id=app.app_id,
        app_id=app.pk,
        details=details,
        now=now,
    )


def key_event(
    api_key: ApiKey, action: AuditAction, actor: Actor, now: dt.datetime, **details: Any
) -> AuditEvent:
    return event(
        actor=actor,
        action=action,
        target_type="api_key",
        target_id=api_key.key_id,
        app_id=api_key.app_id,
        details=details,
        now=now,
    )


def record(*events: AuditEvent) -> None:
    """One INSERT for all the events of an operation."""
    AuditEvent.objects.bulk_create(events)
