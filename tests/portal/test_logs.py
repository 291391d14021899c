"""Logs an operator can use: every line of a request, and of the tasks it enqueues, carries
its request id; one summary line per request; JSON in production; no secret and no external
id in any line."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from accounts.models import DeletionRequest, DeletionStatus
from portal.logs import JsonFormatter, RequestIdFilter, logging_config
from tests.helpers import issue_code, redeem

pytestmark = pytest.mark.django_db

EXTERNAL_ID = "alice-do-not-log-me"


@dataclass
class Line:
    thread: str
    entry: dict


class _Capture(logging.Handler):
    """What the production handler writes: the JSON lines, as text, with their thread."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())
        self.texts: list[str] = []
        self.lines: list[Line] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.texts.append(text)
        self.lines.append(Line(threading.current_thread().name, json.loads(text)))

    def clear(self) -> None:
        self.texts.clear()
        self.lines.clear()


@pytest.fixture
def captured() -> Iterator[_Capture]:
    handler = _Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _summaries(capture: _Capture) -> list[dict]:
    return [line.entry for line in capture.lines if line.entry["logger"] == "portal.request"]


def test_one_summary_line_per_request_with_the_route_not_the_path(customer, captured):
    customer.credentials(
        HTTP_AUTHORIZATION=f"Bearer {customer.api_key.full_key}", HTTP_X_REQUEST_ID="t-123"
    )
    user_id = issue_code(customer, EXTERNAL_ID)["user_id"]
    customer.get("/users", {"external_id": EXTERNAL_ID})
    customer.get("/users/0123456789abcdef01234567")

    issued, found, missing = _summaries(captured)
    key = customer.api_key
    assert issued == {
        **issued,
        "level": "INFO",
        "request_id": "t-123",
        "method": "POST",
        "route": "users/auth-code",
        "status": 200,
        "app_id": key.app.app_id,
        "key_id": key.key_id,
        "errorCode": None,
    }
    assert isinstance(issued["duration_ms"], float)
    assert (found["route"], found["status"]) == ("users", 200)
    assert (missing["route"], missing["status"], missing["errorCode"]) == (
        "users/<str:user_id>",
        404,
        "USER_NOT_FOUND",
    )
    assert user_id not in json.dumps(_summaries(captured))  # routes, never paths


def test_unmatched_paths_and_sdk_calls_are_summarised(api, app, customer, captured):
    api.get("/no/such/path?external_id=" + EXTERNAL_ID)
    code = issue_code(customer, EXTERNAL_ID)["authentication_code"]
    token = redeem(api, code, app.app_id).json()["access_token"]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    api.get("/sdk/status")

    unmatched, _, redeemed, status = _summaries(captured)
    assert (unmatched["route"], unmatched["status"], unmatched["errorCode"]) == (
        "unmatched",
        404,
        "NOT_FOUND",
    )
    assert (redeemed["route"], redeemed["status"], redeemed["app_id"]) == (
        "sdk/users",
        201,
        app.app_id,
    )
    assert (status["route"], status["app_id"], status["key_id"]) == ("sdk/status", app.app_id, None)


def test_an_answer_given_before_routing_is_summarised_under_its_route(api, captured, settings):
    """The early 413 answers before Django resolves the URL; logs and metrics still name it."""
    settings.API_MAX_BODY_BYTES = 10
    api.post("/users/auth-code", {"external_id": "x" * 50}, format="json")
    [summary] = _summaries(captured)
    assert (summary["route"], summary["status"], summary["errorCode"]) == (
        "users/auth-code",
        413,
        "PAYLOAD_TOO_LARGE",
    )


def test_no_secret_and_no_external_id_in_any_line(api, app, customer, captured, settings):
    """Every kind of request, failures included, in JSON and in text: neither the key, the
    code, the token nor the external id appears anywhere."""
    settings.THROTTLE_AUTH_FAILURE_RATE = "1/min"
    code = issue_code(customer, EXTERNAL_ID)["authentication_code"]
    redeemed = redeem(api, code, app.app_id).json()
    token = redeemed["access_token"]
    redeem(api, code, app.app_id, install_id="another-install-1")  # reuse: refused
    customer.get("/users", {"external_id": EXTERNAL_ID})
    customer.get(f"/users?external_id={EXTERNAL_ID}&api_key={customer.api_key.full_key}")
    wrong = APIClient()
    for _ in range(3):  # failures, then the failure limit
        wrong.credentials(HTTP_AUTHORIZATION=f"Bearer {customer.api_key.key_id}.{'y' * 43}")
        wrong.post("/users/auth-code", {"external_id": EXTERNAL_ID}, format="json")
    sdk = APIClient()
    sdk.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    sdk.post("/sdk/token")
    customer.delete(f"/users/{redeemed['user_id']}")

    records_as_text = "\n".join(captured.texts)
    assert len(captured.lines) >= 10
    secret = customer.api_key.full_key.split(".", 1)[1]
    for forbidden in (EXTERNAL_ID, secret, code, token, "y" * 43):
        assert forbidden not in records_as_text
    assert all(line.entry["request_id"] != "-" for line in captured.lines)


def test_the_text_format_carries_the_request_id(customer, captured):
    config = logging_config(log_format="text", level="INFO")
    formatter = logging.Formatter(config["formatters"]["text"]["format"])
    customer.credentials(
        HTTP_AUTHORIZATION=f"Bearer {customer.api_key.full_key}", HTTP_X_REQUEST_ID="t-9"
    )
    customer.get("/users/0123456789abcdef01234567")
    record = logging.makeLogRecord({"name": "x", "msg": "hello", "levelname": "INFO"})
    RequestIdFilter().filter(record)
    assert formatter.format(record).endswith("[-] hello")  # outside a request
    assert _summaries(captured)[0]["request_id"] == "t-9"


def test_a_disallowed_host_is_one_line_without_traceback(api, captured):
    response = api.get("/healthz", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json()["errorCode"] == "INVALID_REQUEST"
    security = [line.entry for line in captured.lines if "DisallowedHost" in line.entry["logger"]]
    assert len(security) == 1
    assert "exception" not in security[0]
    assert security[0]["request_id"] == response["X-Request-ID"]


def test_an_unexpected_error_logs_its_traceback_with_the_request_id(customer, captured):
    from unittest import mock

    customer.raise_request_exception = False
    customer.credentials(
        HTTP_AUTHORIZATION=f"Bearer {customer.api_key.full_key}", HTTP_X_REQUEST_ID="t-500"
    )
    secret = customer.api_key.full_key
    with mock.patch("accounts.api.services.issue_auth_code", side_effect=RuntimeError("boom")):
        response = customer.post(
            f"/users/auth-code?external_id={EXTERNAL_ID}&api_key={secret}",
            {"external_id": EXTERNAL_ID},
            format="json",
        )
    assert response.status_code == 500
    text = "\n".join(captured.texts)
    assert EXTERNAL_ID not in text
    assert secret not in text
    errors = [line.entry for line in captured.lines if line.entry["level"] == "ERROR"]
    assert {entry["request_id"] for entry in errors} == {"t-500"}
    assert any("RuntimeError: boom" in entry.get("exception", "") for entry in errors)
    assert _summaries(captured)[0]["status"] == 500


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_purge_task_logs_under_the_deleting_requests_id(customer, captured):
    from tests.celery_worker import redis_worker, wait_until

    user_id = issue_code(customer, EXTERNAL_ID)["user_id"]
    with redis_worker():
        # The test worker sets up Celery's logging (level WARNING) as it starts.
        logging.getLogger().setLevel(logging.INFO)
        if captured not in logging.getLogger().handlers:
            logging.getLogger().addHandler(captured)
        captured.clear()
        customer.credentials(
            HTTP_AUTHORIZATION=f"Bearer {customer.api_key.full_key}", HTTP_X_REQUEST_ID="t-123"
        )
        request_id = customer.delete(f"/users/{user_id}").json()["request_id"]
        assert wait_until(
            lambda: DeletionRequest.objects.get(request_id=request_id).status == DeletionStatus.DONE
        )
        assert wait_until(lambda: any("purged" in t for t in captured.texts))

    worker_lines = [line for line in captured.lines if line.thread != "MainThread"]
    request_lines = [line for line in captured.lines if line.thread == "MainThread"]
    assert any("purged the data" in line.entry["message"] for line in worker_lines)
    assert any(line.entry["logger"] == "portal.request" for line in request_lines)
    task_lines = [line for line in worker_lines if "purge" in line.entry["message"]]
    assert task_lines
    assert {line.entry["request_id"] for line in task_lines} == {"t-123"}
    assert {line.entry["request_id"] for line in request_lines} == {"t-123"}
    assert EXTERNAL_ID not in "\n".join(captured.texts)
