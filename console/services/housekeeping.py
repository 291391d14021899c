"""What signing in leaves behind, swept on the beat (`console.tasks.sweep_console`): expired
sessions (staff admin and console alike: nothing else deletes them), the console's records of
sessions that have ended, invitations well past their expiry, and sign-in failures older than
the lockout window. Each kind goes in bounded batches, each one short DELETE picking its rows by
an index, never loading rows into Python and never one huge statement."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.utils import timezone

from console.models import Invitation, PersonSession, SignInFailure
from console.services import lockout


def _in_batches(rows: Callable[[], QuerySet], batch_size: int) -> int:
    """Deletes `rows()` (ordered along an index), `batch_size` at a time, until none are left."""
    total = 0
    while True:
        batch = rows()
        deleted, _ = (
            batch.model.objects.filter(pk__in=Subquery(batch.values("pk")[:batch_size]))
        ).delete()
        total += deleted
        if deleted < batch_size:
            return total


def sweep(*, now: dt.datetime | None = None, batch_size: int | None = None) -> dict[str, int]:
    """Returns how many rows of each kind went. An invitation is kept
    CONSOLE_INVITATION_RETENTION past its expiry whatever became of it (the Team page shows
    only pending ones; the audit log keeps the story)."""
    now = now or timezone.now()
    size = batch_size or settings.CONSOLE_SWEEP_BATCH_SIZE
    return {
        "sessions": _in_batches(
            lambda: Session.objects.filter(expire_date__lte=now).order_by("expire_date"), size
        ),
        "person_sessions": _in_batches(
            lambda: PersonSession.objects.filter(
                ~Exists(Session.objects.filter(session_key=OuterRef("session_key")))
            ).order_by("pk"),
            size,
        ),
        "invitations": _in_batches(
            lambda: Invitation.objects.filter(
                expires_at__lte=now - settings.CONSOLE_INVITATION_RETENTION
            ).order_by("pk"),
            size,
        ),
        "sign_in_failures": _in_batches(
            lambda: SignInFailure.objects.filter(failed_at__lte=now - lockout.window()).order_by(
                "failed_at"
            ),
            size,
        ),
    }
