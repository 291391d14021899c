"""Redis is optional at request time: the rate limits fail open, a deletion is answered and
kept when the broker is down, readiness only degrades. Faults are real: a throwaway
redis-server of the test's own is killed or frozen (SIGSTOP)."""

import logging
import time

import pytest

from accounts.models import DeletionRequest, DeletionStatus
from portal import metrics, throttling
from tests.celery_worker import _reset_connections
from tests.helpers import issue_code, redeem
from tests.throwaway import throwaway_redis

pytestmark = [pytest.mark.redis, pytest.mark.django_db]


@pytest.fixture
def broker():
    """Points the Celery app at a broker the test chooses, and back afterwards."""
    from portal.celery import app as celery_app

    saved = {key: celery_app.conf[key] for key in ("broker_url", "task_always_eager")}

    def use(url: str) -> None:
        celery_app.conf.update(broker_url=url, task_always_eager=False)
        _reset_connections()

    yield use
    celery_app.conf.update(saved)
    _reset_connections()


def _fail_open_count(limit: str) -> float:
    return metrics.THROTTLE_FAIL_OPEN.labels(limit=limit)._value.get()


def _issue(client, external_id: str = "alice"):
    return client.post("/users/auth-code", {"external_id": external_id}, format="json")


def test_a_hung_redis_costs_one_short_timeout(customer, settings, tmp_path, caplog, monkeypatch):
    from portal import throttling

    monkeypatch.setattr(throttling, "FLUSH_SECONDS", 0)  # every request tries Redis
    with throwaway_redis(tmp_path) as server:
        settings.REDIS_URL = server.url
        settings.THROTTLE_API_KEY_RATE = "1000/min"
        assert _issue(customer).status_code == 200
        server.freeze()
        before = _fail_open_count("api_key")
        with caplog.at_level(logging.WARNING, logger="portal.throttling"):
            started = time.monotonic()
            answers = [_issue(customer).status_code for _ in range(20)]
            elapsed = time.monotonic() - started

    assert answers == [200] * 20
    # One timeout of THROTTLE_REDIS_TIMEOUT (0.1 s), then the store is left alone for a
    # second: waiting on every request would take 20 x 0.1 s at least.
    assert elapsed < 2.0, elapsed
    assert _fail_open_count("api_key") - before == 20
    warnings = [r for r in caplog.records if r.name == "portal.throttling"]
    assert len(warnings) == 1  # at most once a minute per process
    assert "TimeoutError" in warnings[0].getMessage()


def test_the_limits_count_again_once_redis_is_back(customer, settings, tmp_path):
    with throwaway_redis(tmp_path) as server:
        settings.REDIS_URL = server.url
        settings.THROTTLE_API_KEY_RATE = "2/min"
        server.kill()
        assert [_issue(customer).status_code for _ in range(3)] == [200, 200, 200]
        server.start()
        time.sleep(1.1)  # the store is left alone for a second after a failure
        assert [_issue(customer).status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_redis_killed_the_api_keeps_answering_and_the_deletion_is_purged_later(
    customer, app, api, settings, tmp_path, monkeypatch, broker
):
    """Redis is the rate limiter's store and the broker. With it gone: issuance, redemption,
    status and DELETE answer 2xx, the deletion is on record, /readyz stays 200 (degraded).
    Once Redis is back, the deletion sweep on a real worker purges the user."""
    from accounts import tasks
    from tests.celery_worker import redis_worker, wait_until

    with throwaway_redis(tmp_path) as server:
        settings.REDIS_URL = server.url
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": server.url,
                "OPTIONS": {"socket_connect_timeout": 0.1, "socket_timeout": 0.1},
            }
        }
        broker(server.url)
        server.kill()

        started = time.monotonic()
        code = issue_code(customer, "alice")
        redeemed = redeem(api, code["authentication_code"], app.app_id)
        assert redeemed.status_code == 201, redeemed.content
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {redeemed.json()['access_token']}")
        assert api.get("/sdk/status").status_code == 200
        deleted = customer.delete(f"/users/{code['user_id']}")
        assert deleted.status_code == 202, deleted.content
        ready = customer.get("/readyz")
        elapsed = time.monotonic() - started

        assert ready.status_code == 200, ready.content
        assert ready.json()["checks"] == {"database": True, "redis": False}
        assert elapsed < 3, elapsed
        request_id = deleted.json()["request_id"]
        assert DeletionRequest.objects.get(request_id=request_id).status == DeletionStatus.PENDING

        server.start()  # Redis is back: beat's next deletion sweep finds the pending request
        settings.TEST_REDIS_URL = server.url
        monkeypatch.setattr(tasks, "DELETION_SWEEP_GRACE", tasks.DELETION_SWEEP_GRACE * 0)
        with redis_worker():
            tasks.sweep_deletion_requests.delay()
            assert wait_until(
                lambda: (
                    DeletionRequest.objects.get(request_id=request_id).status == DeletionStatus.DONE
                )
            ), "the sweep did not purge the user"
    throttling.store.reset()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_hung_broker_delays_a_deletion_by_seconds_not_forever(
    customer, settings, tmp_path, broker
):
    with throwaway_redis(tmp_path) as server:
        settings.REDIS_URL = server.url
        broker(server.url)
        user_id = issue_code(customer, "alice")["user_id"]
        server.freeze()

        started = time.monotonic()
        deleted = customer.delete(f"/users/{user_id}")
        elapsed = time.monotonic() - started

    assert deleted.status_code == 202
    assert elapsed < 3, elapsed  # the broker's socket timeout (2 s), once
    deletion = DeletionRequest.objects.get(request_id=deleted.json()["request_id"])
    assert deletion.status == DeletionStatus.PENDING  # for the deletion sweep
