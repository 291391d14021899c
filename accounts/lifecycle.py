"""Lifecycle events: the seam through which accounts and devices announce what happened to the
outbox of the events app above them, in the transaction of the change, without importing it.

A service asks `outbox_row(app=..., type=..., data=...)` for each event it may announce: for an
app whose `webhook_events` does not name the type (an app with no endpoint: the common case)
that is a string test on a column already read with the app, and None, so no row and no query.
Otherwise the row comes back unsaved, for the service to insert in its own transaction (with
`record`, or folded into a statement it runs anyway, as redemption does)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import models

from accounts.models import App


class EventType(models.TextChoices):
    """The event types of the contract, as customers subscribe to them."""

    USER_CREATED = "user.created"
    USER_RESTORED = "user.restored"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_DELETED = "user.deleted"
    USER_PURGED = "user.purged"
    DEVICE_ACTIVATED = "device.activated"
    DEVICE_DEACTIVATED = "device.deactivated"
    API_KEY_EXPIRING = "api_key.expiring"
    API_KEY_ROTATED = "api_key.rotated"
    API_KEY_REVOKED = "api_key.revoked"


OutboxBuilder = Callable[..., models.Model]
"""`(app_pk=, type=, data=, now=) -> unsaved outbox row`, registered by the events app."""

_builder: OutboxBuilder | None = None
_written: Callable[[], None] | None = None


def connect_outbox(*, build: OutboxBuilder, written: Callable[[], None]) -> None:
    """Called once by the events app when it is ready: `build` makes a row, `written` is told
    after rows were inserted (it acts once the transaction commits)."""
    global _builder, _written
    _builder, _written = build, written


def written() -> None:
    """For a caller that inserted outbox rows in a statement of its own (redemption folds
    them into its device upsert); `record` tells it itself."""
    if _written is not None:
        _written()


def subscribed(app: App, type: str) -> bool:
    """Whether an enabled endpoint of `app` wants `type` (`app.webhook_events` must be loaded:
    a deferred column would cost the query this is here to avoid)."""
    events = app.webhook_events
    return bool(events) and type in events.split()


def outbox_row(
    *, app: App, type: str, data: dict[str, Any], now: dt.datetime
) -> models.Model | None:
    """The unsaved outbox row announcing `type` for `app`, or None when nobody listens."""
    if _builder is None or not subscribed(app, type):
        return None
    return _builder(app_pk=app.pk, type=type, data=data, now=now)


def record(*rows: models.Model | None) -> None:
    """Inserts the rows that are not None, in one statement (none: no query)."""
    rows_to_insert = [row for row in rows if row is not None]
    if rows_to_insert:
        type(rows_to_insert[0])._default_manager.bulk_create(rows_to_insert)
        written()
