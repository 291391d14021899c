"""/metrics: hidden without its token, counters that move with requests, tasks and sweeps,
label values that never carry an id, and the multiprocess mode gunicorn runs in."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import shared_task
from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounts import tasks
from accounts.models import DeletionRequest
from portal import metrics
from tests.celery_worker import redis_worker, wait_until
from tests.factories import ApiKeyFactory, AuthCodeFactory, LinkedUserFactory
from tests.helpers import issue_code, redeem

pytestmark = pytest.mark.django_db

TOKEN = "test-metrics-token-0123456789"
PROJECT = Path(settings.BASE_DIR)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests(route: str, method: str, status: int) -> float:
    return value("portal_http_requests_total", route=route, method=method, status=str(status))


@pytest.fixture
def scraper(settings) -> APIClient:
    settings.METRICS_TOKEN = TOKEN
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


def _is_an_unknown_path(response, api: APIClient) -> None:
    unknown = api.get("/no-such-path")
    assert response.status_code == unknown.status_code == 404
    assert response["Content-Type"] == unknown["Content-Type"]
    body, expected = response.json(), unknown.json()
    assert set(body) == set(expected)
    assert body["errorCode"] == expected["errorCode"] == "NOT_FOUND"
    assert body["message"] == expected["message"].replace("/no-such-path", "/metrics")


def test_without_the_token_setting_metrics_is_an_unknown_path(api, settings):
    settings.METRICS_TOKEN = ""
    _is_an_unknown_path(api.get("/metrics"), api)
    _is_an_unknown_path(api.get("/metrics", HTTP_AUTHORIZATION="Bearer "), api)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"],
)
def test_without_the_right_token_metrics_is_an_unknown_path(api, settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    _is_an_unknown_path(api.get("/metrics", **headers), api)
    # Not even a CSRF refusal or a 405 gives it away.
    _is_an_unknown_path(api.post("/metrics", **headers), api)


def test_with_the_token_metrics_answers_the_text_format(scraper):
    response = scraper.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"portal_http_requests", "portal_http_request_duration_seconds"} <= names
    assert scraper.post("/metrics").status_code == 405


def test_metrics_is_not_in_the_openapi_document(api):
    assert "/metrics" not in api.get("/api/schema/?format=json").json()["paths"]


def test_an_issuance_counts_its_request_its_latency_and_its_outcome(customer):
    before = (
        requests("users/auth-code", "POST", 200),
        value("portal_http_request_duration_seconds_count", route="users/auth-code", method="POST"),
        value("portal_issuances_total", outcome="ok"),
    )
    issue_code(customer, "alice")
    after = (
        requests("users/auth-code", "POST", 200),
        value("portal_http_request_duration_seconds_count", route="users/auth-code", method="POST"),
        value("portal_issuances_total", outcome="ok"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]


def test_a_bad_key_counts_a_401_and_its_error_code(api):
    before = requests("users/auth-code", "POST", 401)
    failed = value("portal_issuances_total", outcome="INVALID_API_KEY")
    response = api.post(
        "/users/auth-code",
        {"external_id": "alice"},
        format="json",
        HTTP_AUTHORIZATION="Bearer 0123456789abcdef.not-the-secret",
    )
    assert response.status_code == 401
    assert requests("users/auth-code", "POST", 401) == before + 1
    assert value("portal_issuances_total", outcome="INVALID_API_KEY") == failed + 1


def test_an_oversized_body_refused_before_routing_still_counts_under_its_route(customer, settings):
    settings.API_MAX_BODY_BYTES = 100
    before = value("portal_issuances_total", outcome="PAYLOAD_TOO_LARGE")
    response = customer.post("/users/auth-code", {"external_id": "x" * 200}, format="json")
    assert response.status_code == 413
    assert value("portal_issuances_total", outcome="PAYLOAD_TOO_LARGE") == before + 1


def test_redemptions_count_by_outcome(customer, api, app):
    ok, invalid = (
        value("portal_redemptions_total", outcome=o) for o in ("ok", "INVALID_AUTH_CODE")
    )
    code = issue_code(customer, "alice")["authentication_code"]
    assert redeem(api, code, app.app_id).status_code == 201
    assert redeem(api, "x" * 43, app.app_id).status_code == 400
    assert value("portal_redemptions_total", outcome="ok") == ok + 1
    assert value("portal_redemptions_total", outcome="INVALID_AUTH_CODE") == invalid + 1


def test_a_429_counts_by_limit(customer, settings):
    settings.THROTTLE_API_KEY_RATE = "1/min"
    throttled = value("portal_throttled_total", limit="api_key")
    refused = value("portal_issuances_total", outcome="RATE_LIMITED")
    issue_code(customer, "alice")
    assert customer.post("/users/auth-code", {"external_id": "a"}, format="json").status_code == 429
    assert value("portal_throttled_total", limit="api_key") == throttled + 1
    assert value("portal_issuances_total", outcome="RATE_LIMITED") == refused + 1


def test_the_fail_open_counter_is_there_for_the_rate_limiter():
    (family,) = metrics.THROTTLE_FAIL_OPEN.describe()
    assert family.name == "portal_throttle_fail_open"  # exposed as portal_throttle_fail_open_total
    assert family.type == "counter"
    assert metrics.THROTTLE_FAIL_OPEN._labelnames == ("limit",)


def test_labels_never_carry_a_path_an_id_or_an_external_id(customer, api, scraper):
    secret_external_id = "ext-never-a-label-7c1e"
    user_id = issue_code(customer, secret_external_id)["user_id"]
    customer.get(f"/users/{user_id}")
    customer.get("/users", {"external_id": secret_external_id})
    unmatched = requests("unmatched", "GET", 404)
    api.get(f"/no-such-path/{secret_external_id}")
    other = requests("healthz", "other", 405)
    api.generic("BREW", "/healthz")

    assert requests("unmatched", "GET", 404) == unmatched + 1
    assert requests("healthz", "other", 405) == other + 1
    exposed = scraper.get("/metrics").text
    assert 'route="users/<str:user_id>"' in exposed
    for leak in (secret_external_id, user_id, customer.api_key.key_id, "no-such-path", "BREW"):
        assert leak not in exposed


def test_a_task_run_counts_its_run_and_duration_and_the_sweep_its_rows():
    name = "accounts.tasks.sweep_auth_codes"
    user = LinkedUserFactory()
    for _ in range(3):
        AuthCodeFactory(user=user, expires_at=timezone.now() - dt.timedelta(minutes=1))
    runs = value("portal_task_runs_total", task=name)
    durations = value("portal_task_duration_seconds_count", task=name)
    sweeps = value("portal_sweep_duration_seconds_count", sweep="auth_codes")
    expired = value("portal_sweep_rows_total", sweep="auth_codes", kind="expired")

    assert tasks.sweep_auth_codes.delay().get() == {"expired": 3, "purged": 0}

    assert value("portal_task_runs_total", task=name) == runs + 1
    assert value("portal_task_duration_seconds_count", task=name) == durations + 1
    assert value("portal_sweep_duration_seconds_count", sweep="auth_codes") == sweeps + 1
    assert value("portal_sweep_rows_total", sweep="auth_codes", kind="expired") == expired + 3


def test_the_deletion_sweep_counts_the_deletions_it_purged(app):
    key = ApiKeyFactory(app=app)
    customer = APIClient()
    customer.credentials(HTTP_AUTHORIZATION=f"Bearer {key.full_key}")
    user_id = issue_code(customer, "alice")["user_id"]
    # The purge is enqueued on commit, which never comes inside a test's transaction: the
    # request stays pending, as when the broker was down, until the sweep finds it.
    assert customer.delete(f"/users/{user_id}").status_code == 202
    DeletionRequest.objects.update(requested_at=timezone.now() - dt.timedelta(minutes=10))
    purged = value("portal_sweep_rows_total", sweep="deletions", kind="purged")
    sweeps = value("portal_sweep_duration_seconds_count", sweep="deletions")

    assert tasks.sweep_deletion_requests.delay().get() == 1

    assert value("portal_sweep_rows_total", sweep="deletions", kind="purged") == purged + 1
    assert value("portal_sweep_duration_seconds_count", sweep="deletions") == sweeps + 1


@shared_task(name="tests.metrics.failing_task")
def failing_task() -> None:
    raise RuntimeError("this task fails on purpose")


@pytest.mark.redis
def test_a_task_failing_on_the_worker_counts_a_failure():
    """On a worker (here a real one, on Redis); an in-process task's error propagates to the
    request that ran it instead, which counts it as a 500."""
    name = "tests.metrics.failing_task"
    runs = value("portal_task_runs_total", task=name)
    failures = value("portal_task_failures_total", task=name)
    with redis_worker():
        failing_task.delay()
        assert wait_until(lambda: value("portal_task_runs_total", task=name) == runs + 1)
    assert value("portal_task_failures_total", task=name) == failures + 1


_SERVE_HEALTHZ = """
import sys
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client()
for _ in range(int(sys.argv[1])):
    assert client.get("/healthz").status_code == 200
"""


def test_multiprocess_mode_adds_up_the_processes(scraper, tmp_path, monkeypatch):
    """Two processes (as two gunicorn workers) count requests into the directory; a third
    serves /metrics with their sum."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        metrics.MULTIPROC_DIR_VARIABLE: str(tmp_path),
    }
    workers = [
        subprocess.Popen(  # noqa: S603 (our own interpreter and script)
            [sys.executable, "-c", _SERVE_HEALTHZ, str(count)], cwd=PROJECT, env=env
        )
        for count in (3, 4)
    ]
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process

    monkeypatch.setenv(metrics.MULTIPROC_DIR_VARIABLE, str(tmp_path))
    response = scraper.get("/metrics")

    assert response.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    healthz = (("method", "GET"), ("route", "healthz"), ("status", "200"))
    assert samples[("portal_http_requests_total", healthz)] == 7
    assert samples[("portal_http_request_duration_seconds_count", healthz[:2])] == 7
    # Only what the two processes wrote: this process's own counts are not in the files.
    routes = {dict(labels)["route"] for name, labels in samples if "route" in dict(labels)}
    assert routes == {"healthz"}


def test_child_exit_drops_a_dead_workers_live_gauges(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.MULTIPROC_DIR_VARIABLE, str(tmp_path))
    dead, alive = tmp_path / "gauge_livesum_4242.db", tmp_path / "gauge_livesum_4243.db"
    counts = tmp_path / "counter_4242.db"
    for path in (dead, alive, counts):
        path.write_bytes(b"")

    metrics.child_exit(server=None, worker=SimpleNamespace(pid=4242))

    assert not dead.exists()
    assert alive.exists() and counts.exists()  # its counts still add up after it exited
