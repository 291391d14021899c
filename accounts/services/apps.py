"""Apps: creation and what staff may change."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.audit import Actor
from accounts.models import (
    App,
    AuditAction,
)
from portal.errors import DomainError, ErrorCode

log = logging.getLogger("portal.accounts")


def create_app(
    *, name: str, contact_emails: Iterable[str] = (), sdk_config: Mapping[str, Any] | None = None
) -> App:
    app = App(
        name=name, contact_emails=_valid_emails(contact_emails), sdk_config=dict(sdk_config or {})
    )
    app.full_clean()
    app.save()
    return app


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
            raise DomainError(
                ErrorCode.INVALID_REQUEST, "the SDK configuration must be a JSON object"
            )
        wanted["sdk_config"] = dict(sdk_config)
    with transaction.atomic():
        locked = App.objects.select_for_update(no_key=True).get(pk=app.pk)
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
    return locked


def _valid_emails(emails: Iterable[str]) -> list[str]:
    unique = list(dict.fromkeys(email.strip() for email in emails if email.strip()))
    for email in unique:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise DomainError(
                ErrorCode.INVALID_REQUEST, f"not an e-mail address: {email!r}"
            ) from exc
    return unique
