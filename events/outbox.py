"""The outbox's two ends seen from the services below: building a row (accounts.lifecycle
calls `build` for an app that listens) and, once the transaction that wrote it commits,
waking the dispatcher (`written`).

The wake-up is an optimisation only: the beat sweep (events.tasks.sweep_webhooks) finds every
event not dispatched yet, so nothing waits on the broker having been up. It is sent at most
once per KICK_INTERVAL per process, delayed by as much, so it runs after every event of that
interval committed: at most two messages a second per process whatever the load, so an event
waits about half a second for its dispatch and few requests pay for sending one. After a
failed send none is sent for BROKER_DOWN_PAUSE, so a broker that is down costs one request a
short wait, not every request."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from django.db import transaction

from events.models import Event
from portal.errors import describe_error

log = logging.getLogger("portal.events")

KICK_INTERVAL = 0.5
BROKER_DOWN_PAUSE = 5.0

_lock = threading.Lock()
_quiet_until = 0.0


def build(*, app_pk: int, type: str, data: dict[str, Any], now: dt.datetime) -> Event:
    return Event(app_id=app_pk, type=type, data=data, created_at=now)


def written() -> None:
    """Wakes the dispatcher once the current transaction commits (at once outside one)."""
    transaction.on_commit(_kick)


def _kick() -> None:
    global _quiet_until
    from events.tasks import dispatch_events

    if dispatch_events.app.conf.task_always_eager:  # in-process tasks: dispatch now
        dispatch_events.delay()
        return
    now = time.monotonic()
    with _lock:
        if now < _quiet_until:
            return  # a wake-up already on its way runs after this commit, or the sweep will
        _quiet_until = now + KICK_INTERVAL
    try:
        dispatch_events.apply_async(countdown=KICK_INTERVAL)
    except Exception as exc:
        with _lock:
            _quiet_until = time.monotonic() + BROKER_DOWN_PAUSE
        log.warning(
            "could not wake the webhook dispatcher (%s: %s); the sweep will deliver",
            exc.__class__.__name__,
            describe_error(exc),
        )
