"""A real Celery worker on the real Redis, for the tests of the task wiring."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from kombu import pools as kombu_pools

from portal.celery import app as celery_app


@contextmanager
def redis_worker() -> Iterator[None]:
    """Points the Celery app at TEST_REDIS_URL (tasks really go through the broker) and runs
    a worker thread for the duration; the queue is emptied first so no stale task runs."""
    redis.Redis.from_url(settings.TEST_REDIS_URL).flushdb()
    saved = {key: celery_app.conf[key] for key in ("broker_url", "task_always_eager")}
    celery_app.conf.update(broker_url=settings.TEST_REDIS_URL, task_always_eager=False)
    _reset_connections()
    try:
        with start_worker(
            celery_app,
            pool="solo",
            perform_ping_check=False,
            shutdown_timeout=10,
            loglevel="WARNING",
        ):
            yield
    finally:
        celery_app.conf.update(saved)
        _reset_connections()


def _reset_connections() -> None:
    """Drops pooled broker connections so the next publish uses the current broker_url."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    kombu_pools.reset()


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
