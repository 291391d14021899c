"""Apps: creation and what staff may change."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
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
        wanted["sdk_config"] = check_sdk_config(sdk_config)
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
            audit.record(audit.app_event(locked, actor, now, fields=changed))
    return locked


MAX_SDK_CONFIG_BYTES = 16 * 1024
"""Every redemption and status call returns the configuration: it must stay small."""


MAX_SDK_CONFIG_DEPTH = 32
"""Nesting levels of arrays and objects: deeper ones would exhaust the JSON encoder's stack."""


def sdk_config_size(config: Any) -> int:
    """Bytes of the configuration as stored and sent (compact JSON, UTF-8)."""
    return len(json.dumps(config, ensure_ascii=False, separators=(",", ":")).encode())


def _storable_problem(value: Any, depth: int = 0) -> str | None:
    """Why PostgreSQL's jsonb (or UTF-8, or the stack) would refuse the value, if it would:
    NaN and infinities, the NUL character and lone surrogates, too deep a nesting."""
    if depth > MAX_SDK_CONFIG_DEPTH:
        return f"it must be nested at most {MAX_SDK_CONFIG_DEPTH} levels deep"
    if isinstance(value, float) and not math.isfinite(value):
        return "numbers must be finite (no NaN or Infinity)"
    if isinstance(value, str):
        if "\x00" in value:
            return "text must not contain the NUL character (\\u0000)"
        try:
            value.encode()
        except UnicodeEncodeError:
            return "text must be valid Unicode (no lone surrogate such as \\ud800)"
        return None
    if isinstance(value, Mapping):
        items = [item for pair in value.items() for item in pair]
    elif isinstance(value, list):
        items = value
    else:
        return None
    return next(
        (problem for item in items if (problem := _storable_problem(item, depth + 1))), None
    )


def check_sdk_config(config: Any) -> dict[str, Any]:
    """The configuration as it will be stored, or a DomainError saying why it cannot be: a
    JSON object, storable as jsonb, of at most MAX_SDK_CONFIG_BYTES."""
    if not isinstance(config, Mapping):
        raise DomainError(ErrorCode.INVALID_REQUEST, "the SDK configuration must be a JSON object")
    config = dict(config)
    problem = _storable_problem(config)
    if problem:
        raise DomainError(ErrorCode.INVALID_REQUEST, f"the SDK configuration: {problem}")
    size = sdk_config_size(config)
    if size > MAX_SDK_CONFIG_BYTES:
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            f"the SDK configuration must be at most {MAX_SDK_CONFIG_BYTES // 1024} KB "
            f"(this one is {size} bytes)",
        )
    return config


def set_sdk_config(*, app: App, config: Any, actor: Actor, now: dt.datetime | None = None) -> App:
    """Replaces the app's SDK configuration: a JSON object of at most MAX_SDK_CONFIG_BYTES.
    Unlike `update_app`, the audit event keeps the configuration before and after: it is
    the customer's own, bounded, and "what changed when" is what its developers ask. An
    unchanged configuration records nothing."""
    now = now or timezone.now()
    config = check_sdk_config(config)
    with transaction.atomic():
        locked = App.objects.select_for_update(no_key=True).get(pk=app.pk)
        before = locked.sdk_config
        if before == config:
            return locked
        locked.sdk_config = config
        locked.save(update_fields=["sdk_config"])
        audit.record(
            audit.app_event(locked, actor, now, fields=["sdk_config"], before=before, after=config)
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
