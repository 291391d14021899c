"""Background jobs on accounts: thin wrappers around services."""

from __future__ import annotations

import datetime as dt
import time

from celery import shared_task

from accounts import services
from portal import metrics

DELETION_SWEEP_GRACE = dt.timedelta(minutes=5)


@shared_task(acks_late=True)
def purge_deleted_user(request_id: str) -> bool:
    return services.purge_deleted_user(request_id=request_id)


@shared_task(acks_late=True)
def sweep_deletion_requests() -> int:
    """Purges deletions whose own task never ran (broker down, worker lost)."""
    started = time.perf_counter()
    request_ids = services.pending_deletions(older_than=DELETION_SWEEP_GRACE)
    purged = sum(services.purge_deleted_user(request_id=request_id) for request_id in request_ids)
    metrics.record_sweep("deletions", time.perf_counter() - started, purged=purged)
    return purged


@shared_task(acks_late=True)
def sweep_auth_codes() -> dict[str, int]:
    started = time.perf_counter()
    result = services.sweep_auth_codes()
    metrics.record_sweep(
        "auth_codes", time.perf_counter() - started, expired=result.expired, purged=result.purged
    )
    return {"expired": result.expired, "purged": result.purged}


@shared_task(acks_late=True)
def send_key_expiry_notices() -> int:
    return services.send_key_expiry_notices()
