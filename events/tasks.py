"""Background jobs of the webhooks: thin wrappers around events.services.

`dispatch_events` is woken after a commit that wrote outbox rows; `sweep_webhooks`, on the
beat every WEBHOOK_SWEEP_SECONDS, does the same and sends what is due (retries, and whatever
a lost message or a dead worker left behind), so delivery never depends on a message having
reached the broker. Each delivery attempt is its own task: one slow receiver holds one worker
for at most the client's 10 s, never another endpoint's queue."""

from __future__ import annotations

import logging
import time

from celery import shared_task

from events import services
from portal import metrics
from portal.errors import describe_error

log = logging.getLogger("portal.events")


def _send(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        try:
            deliver.delay(delivery_id)
        except Exception as exc:
            log.warning(
                "could not enqueue webhook deliveries (%s: %s); the sweep will",
                exc.__class__.__name__,
                describe_error(exc),
            )
            return


@shared_task(acks_late=True)
def dispatch_events() -> int:
    created = services.dispatch_events()
    _send(created)
    return len(created)


@shared_task(acks_late=True)
def deliver(delivery_id: int) -> bool | None:
    result = services.attempt_delivery(delivery_id=delivery_id)
    return None if result.outcome is None else result.outcome.succeeded


@shared_task(acks_late=True)
def sweep_webhooks() -> dict[str, int]:
    started = time.perf_counter()
    dispatched = len(services.dispatch_events())  # due at once: sent with the due ones below
    failed = services.fail_expired_deliveries()
    due = services.due_deliveries()
    _send(due)
    metrics.record_sweep(
        "webhooks",
        time.perf_counter() - started,
        dispatched=dispatched,
        failed=failed,
        due=len(due),
    )
    return {"dispatched": dispatched, "failed": failed, "due": len(due)}


@shared_task(acks_late=True)
def sweep_webhook_log() -> dict[str, int]:
    started = time.perf_counter()
    result = services.sweep_log()
    metrics.record_sweep("webhook_log", time.perf_counter() - started, purged=sum(result.values()))
    return result
