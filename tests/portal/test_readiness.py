"""/readyz: only the database makes a process unready, Redis only degrades it, and the answer
comes within 2 s whatever the services do. The frozen-database case, on a real cluster, is in
test_database_faults.py."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import OperationalError

from portal import readiness
from portal.readiness import Probe
from tests.throwaway import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_probes(monkeypatch) -> None:
    """Each test starts with probes that have no failure streak behind them."""
    monkeypatch.setattr(readiness, "DATABASE", Probe("database", readiness._database_answers))
    monkeypatch.setattr(readiness, "REDIS", Probe("redis", readiness._redis_answers))


def health_records(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "portal.health"]


def assert_unready(response) -> dict:
    """/readyz's 503: the error envelope, with the checks beside it."""
    assert response.status_code == 503
    body = response.json()
    assert body["errorCode"] == "SERVICE_UNAVAILABLE"
    assert body["request_id"] == response["X-Request-ID"]
    assert body["status"] == "unavailable"
    assert "database" in body["message"]
    return body


def test_ready_when_the_database_answers(api):
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": True}}
    assert response["X-Request-ID"]


@pytest.mark.redis
def test_ready_when_both_answer(api, settings):
    settings.REDIS_URL = settings.TEST_REDIS_URL
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": True, "redis": True}}


def test_redis_not_answering_only_degrades(api, settings, caplog):
    settings.REDIS_URL = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    with caplog.at_level(logging.INFO, logger="portal.health"):
        answers = [api.get("/readyz") for _ in range(3)]
    for response in answers:
        assert response.status_code == 200, response.content
        assert response.json() == {
            "status": "degraded",
            "checks": {"database": True, "redis": False},
        }
    # One line for the whole streak, saying which service and why, without a traceback.
    [line] = health_records(caplog)
    assert line.getMessage().startswith("readiness: redis does not answer: ConnectionError: ")
    assert line.exc_info is None
    assert "hunter2" not in line.getMessage()


@pytest.mark.redis
def test_a_failure_streak_logs_its_start_and_its_end(api, settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.INFO, logger="portal.health"):
        api.get("/readyz")
        api.get("/readyz")
        settings.REDIS_URL = settings.TEST_REDIS_URL
        assert api.get("/readyz").json()["status"] == "ok"
        api.get("/readyz")
    assert [record.getMessage()[:40] for record in health_records(caplog)] == [
        "readiness: redis does not answer: Connec",
        "readiness: redis answers again",
    ]


def test_unready_when_the_database_fails(api, monkeypatch, caplog):
    def refused() -> None:
        raise OperationalError(
            'connection to server at "db" failed: password=hunter2 rejected\nHINT: check it'
        )

    monkeypatch.setattr(readiness, "DATABASE", Probe("database", refused))
    with caplog.at_level(logging.INFO, logger="portal.health"):
        body = assert_unready(api.get("/readyz"))
        assert_unready(api.get("/readyz"))
    assert body["checks"] == {"database": False}
    [line] = health_records(caplog)  # one line for the streak, nothing from Django per probe
    assert not [record for record in caplog.records if record.name == "django.request"]
    assert line.getMessage() == (
        'readiness: database does not answer: OperationalError: connection to server at "db" '
        "failed: password=*** rejected"
    )

    monkeypatch.setattr(readiness, "DATABASE", Probe("database", readiness._database_answers))
    assert api.get("/readyz").status_code == 200  # back: ready again, no restart needed


def test_a_hanging_check_is_answered_within_2s_and_never_run_twice_at_once(api, monkeypatch):
    release = threading.Event()
    runs = []

    def hangs() -> None:
        runs.append(1)
        release.wait(10)

    monkeypatch.setattr(readiness, "DATABASE", Probe("database", hangs))
    try:
        for _ in range(2):
            started = time.monotonic()
            assert_unready(api.get("/readyz"))
            assert time.monotonic() - started < 2
        assert len(runs) == 1  # the second probe waited on the check already in flight
    finally:
        release.set()
    assert api.get("/readyz").status_code == 200
