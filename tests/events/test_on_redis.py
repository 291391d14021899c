"""Nothing lost: events committed while the broker is down are delivered once it is back (the
outbox is polled by the sweep, not only pushed); a worker killed in the middle of a delivery
means a repeat, never a loss. Real Redis servers, real workers, a real receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from accounts.audit import Actor
from events import outbox, services, tasks
from events.models import Delivery, DeliveryStatus, Event
from portal.celery import app as celery_app
from tests.celery_worker import _reset_connections, private_keys, wait_until
from tests.helpers import issue_code, new_user, redeem
from tests.throwaway import throwaway_redis

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

OPERATOR = Actor.operator("tests")


@contextmanager
def broker_at(url: str) -> Iterator[None]:
    """Tasks of this process go through the broker at `url` (not run in-process)."""
    keys = ("broker_url", "task_always_eager")
    saved = {key: celery_app.conf[key] for key in keys}
    celery_app.conf.update(broker_url=url, task_always_eager=False)
    _reset_connections()
    try:
        yield
    finally:
        celery_app.conf.update(saved)
        _reset_connections()


@pytest.fixture(autouse=True)
def _fresh_wake_ups(monkeypatch) -> None:
    monkeypatch.setattr(outbox, "_quiet_until", 0.0)


def test_events_of_200_redemptions_made_while_the_broker_is_down_are_all_delivered(
    customer, app, hook, tmp_path
):
    services.create_endpoint(
        app=app, url=hook.url, event_types=["device.activated"], actor=OPERATOR
    )
    sdk = APIClient()
    with throwaway_redis(tmp_path) as broker, broker_at(broker.url):
        codes = [issue_code(customer, f"user-{n}")["authentication_code"] for n in range(200)]
        broker.kill()
        started = time.monotonic()
        for number, code in enumerate(codes):
            answer = redeem(sdk, code, app.app_id, f"install-{number:04d}")
            assert answer.status_code == 201, answer.content
        spent = time.monotonic() - started
        assert Event.objects.count() == 200
        assert hook.requests == []

        broker.start()
        _reset_connections()
        with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
            tasks.sweep_webhooks.delay()  # what the beat sends every WEBHOOK_SWEEP_SECONDS
            hook.wait_for(200, timeout=60)
            assert len(set(hook.event_ids())) == 200

    assert set(hook.event_ids()) == set(Event.objects.values_list("event_id", flat=True))
    assert spent < 30, "a broker that is down must not cost every request a wait"


def _worker(tmp_path: Path, prefix: str, name: str) -> subprocess.Popen[bytes]:
    """A worker process as the Procfile starts it (one process: SIGKILL kills the attempt)."""
    database = connection.settings_dict
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PROMETHEUS_", "DJANGO_", "SENTRY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tests.worker_settings",
        TEST_REDIS_KEY_PREFIX=prefix,
        SECRET_KEY=settings.SECRET_KEY,  # the signing secrets' encryption key derives from it
        DATABASE_URL=(
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        REDIS_URL=settings.TEST_REDIS_URL,
        WEBHOOK_ALLOW_HTTP="true",
        WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        WEBHOOK_DELIVERY_LEASE_SECONDS="2",
        LOG_LEVEL="WARNING",
    )
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo",
         "--without-mingle", "--without-gossip", "--loglevel", "WARNING", "-n", f"{name}@%h"],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_a_worker_killed_mid_delivery_means_a_repeat_never_a_loss(
    customer, app, hook, tmp_path, monkeypatch
):
    services.create_endpoint(app=app, url=hook.url, event_types=["user.created"], actor=OPERATOR)
    monkeypatch.setattr(outbox, "_kick", lambda: None)  # the workers' sweep sends everything
    for number in range(5):
        new_user(customer, app.app_id, f"user-{number}")
    first_arrived, release = threading.Event(), threading.Event()

    def hang_the_first(received) -> None:
        if not first_arrived.is_set():
            first_arrived.set()
            release.wait(30)  # the worker is killed while it waits for this answer

    hook.before_answer = hang_the_first
    with private_keys(settings.TEST_REDIS_URL) as prefix:
        sender = Celery("sender", broker=settings.TEST_REDIS_URL, set_as_current=False)
        sender.conf.broker_transport_options = {"global_keyprefix": prefix}
        first = _worker(tmp_path, prefix, "first")
        try:
            sender.send_task("events.tasks.sweep_webhooks")
            assert first_arrived.wait(60), (tmp_path / "first.log").read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = _worker(tmp_path, prefix, "second")
            try:
                # The beat's sweep: once the dead worker's lease ran out, it sends again.
                def all_delivered() -> bool:
                    sender.send_task("events.tasks.sweep_webhooks")
                    time.sleep(0.5)
                    return not Delivery.objects.exclude(status=DeliveryStatus.SUCCEEDED).exists()

                assert wait_until(all_delivered, timeout=60), (tmp_path / "second.log").read_text()
            finally:
                second.terminate()
                second.wait(15)
        finally:
            release.set()
            if first.poll() is None:
                first.kill()
            sender.close()

    ids = hook.event_ids()
    assert set(ids) == set(Event.objects.values_list("event_id", flat=True))
    assert len(ids) > len(set(ids))  # the interrupted one came again: at least once
