"""Audit events about a console person (sign-ins, 2FA, team changes)."""

from __future__ import annotations

from typing import Any

from accounts import audit
from accounts.audit import Actor
from accounts.models import AuditAction

PERSON_TARGET = "console_member"
"""The audit target type of a console person; its target id is the e-mail (first 64
characters; the actor column holds it whole)."""


def person_event(
    action: AuditAction,
    *,
    email: str,
    actor: Actor | None = None,
    app_id: int | None = None,
    **details: Any,
) -> None:
    """Records `action` about the person `email`, done by `actor` (the person by default)."""
    audit.record(
        audit.event(
            actor=actor or Actor.console(email),
            action=action,
            target_type=PERSON_TARGET,
            target_id=email[:64],
            app_id=app_id,
            details=details,
        )
    )
