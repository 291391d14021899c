"""A real Celery worker on the real Redis, for the tests of the task wiring.

The Redis behind TEST_REDIS_URL may be shared (other checkouts, other runs in parallel, a
developer's own data): a test never flushes it. Each worker's broker keys live under a key
prefix of their own (kombu's `global_keyprefix`), and only the keys under that prefix are
deleted afterwards."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from kombu import pools as kombu_pools

from portal.celery import app as celery_app


@contextmanager
def private_keys(url: str) -> Iterator[str]:
    """A key prefix no one else uses on the Redis at `url`; its keys are deleted on the way
    out (and only they), so a stale task of an earlier test can never reach this one."""
    prefix = f"portal-test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        with redis.Redis.from_url(url) as client:
            ours = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if ours:
                client.delete(*ours)


@contextmanager
def redis_worker() -> Iterator[None]:
    """Points the Celery app at TEST_REDIS_URL (tasks really go through the broker) and runs
    a worker thread for the duration, on broker keys of its own."""
    url = settings.TEST_REDIS_URL
    keys = ("broker_url", "task_always_eager", "broker_transport_options")
    saved = {key: celery_app.conf[key] for key in keys}
    with private_keys(url) as prefix:
        celery_app.conf.update(
            broker_url=url,
            task_always_eager=False,
            broker_transport_options={
                **(saved["broker_transport_options"] or {}),
                "global_keyprefix": prefix,
            },
        )
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
