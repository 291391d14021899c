"""Background jobs of the console: thin wrappers around its services."""

from __future__ import annotations

import time

from celery import shared_task

from console.services import housekeeping
from portal import metrics


@shared_task(acks_late=True)
def sweep_console() -> dict[str, int]:
    started = time.perf_counter()
    swept = housekeeping.sweep()
    metrics.record_sweep("console", time.perf_counter() - started, **swept)
    return swept
