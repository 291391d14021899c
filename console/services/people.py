"""Console people's sessions and account events: sign-in, sign-out, sign out everywhere,
password changes."""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import AuditAction
from console.models import PersonSession
from console.services.events import person_event


def record_session(*, user: Any, session_key: str) -> None:
    """Remembers a session the person opened (a new key at each step of the sign-in), so that
    signing out everywhere finds it without decoding every session of the site; forgets those
    of the person's that have ended meanwhile (a key replaced at the next step, an expiry)."""
    live = Session.objects.filter(
        session_key=OuterRef("session_key"), expire_date__gt=timezone.now()
    )
    with transaction.atomic():
        # NOT EXISTS looks up each of the person's few keys; NOT IN (SELECT ...) would read
        # every live session of the site at every sign-in step.
        PersonSession.objects.filter(~Exists(live), user=user).delete()
        PersonSession.objects.get_or_create(session_key=session_key, defaults={"user": user})


def signed_in(*, user: Any, address: str, second_factor: str) -> None:
    person_event(
        AuditAction.CONSOLE_SIGNED_IN,
        email=user.email,
        client_address=address,
        second_factor=second_factor,
    )


def signed_out(*, user: Any, session_key: str | None, address: str) -> None:
    with transaction.atomic():
        PersonSession.objects.filter(session_key=session_key or "").delete()
        person_event(AuditAction.CONSOLE_SIGNED_OUT, email=user.email, client_address=address)


def end_sessions(*, user: Any, keep: str | None = None, audit: bool = True) -> int:
    """Ends every console session of the person but `keep` (the one asking, if any). Returns
    how many were ended."""
    with transaction.atomic():
        keys = list(
            PersonSession.objects.filter(user=user)
            .exclude(session_key=keep or "")
            .values_list("session_key", flat=True)
        )
        ended, _ = Session.objects.filter(session_key__in=keys).delete()
        PersonSession.objects.filter(session_key__in=keys).delete()
        if audit:
            person_event(AuditAction.CONSOLE_SESSIONS_ENDED, email=user.email, sessions=ended)
    return ended


def password_changed(*, user: Any, how: str) -> None:
    """Audits a new password (`how`: "changed" on the account page, "reset" by e-mail).
    Django itself voids the person's other sessions: they carry a hash of the old password."""
    person_event(AuditAction.CONSOLE_PASSWORD_CHANGED, email=user.email, how=how)
