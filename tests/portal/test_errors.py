"""The error envelope everywhere: Django-level errors, crashes and outages, request ids, API
key refusals, rate limits and health checks (CONTRACT.md, "Errors, everywhere")."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import types
from io import StringIO

import pytest
import redis
from django.core.management import call_command
from django.db import InterfaceError, OperationalError
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import ApiKey, AuthCode, AuthCodeStatus, LinkedUser, Scope, UserStatus
from devices import services as device_services
from devices.models import Device
from portal import throttling
from portal.errors import DomainError, ErrorCode
from tests.factories import ApiKeyFactory, AuthCodeFactory

pytestmark = pytest.mark.django_db

ENVELOPE = {"errorCode", "message", "request_id", "ref"}
FRESH_ID = re.compile(r"[0-9a-f]{32}")


def assert_envelope(response, status: int, code: str) -> dict:
    """The contract's error answer: JSON `{"errorCode", "message", "request_id"}` (plus
    `fields` for validation errors), its request id the one in the X-Request-ID header."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content.decode("utf-8"))
    assert ENVELOPE <= set(body) <= {*ENVELOPE, "fields"}, body
    assert body["errorCode"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["request_id"] and body["request_id"] == response["X-Request-ID"]
    assert body["ref"] == body["request_id"]
    if "fields" in body:
        assert body["fields"] and all(
            isinstance(messages, list) and all(isinstance(m, str) for m in messages)
            for messages in body["fields"].values()
        )
    return body


def rows() -> tuple[int, int, int]:
    return LinkedUser.objects.count(), AuthCode.objects.count(), Device.objects.count()


@pytest.fixture
def crashing() -> APIClient:
    """A client that receives the 500 answer instead of the test re-raising the exception."""
    client = APIClient()
    client.raise_request_exception = False
    return client


@pytest.fixture
def auth_code(app):
    return AuthCodeFactory(user__app=app)


def _redemption(auth_code) -> dict:
    return {
        "authentication_code": auth_code.code,
        "app_id": auth_code.app.app_id,
        "device": {"install_id": "install-0001", "platform": "ios", "form_factor": "phone"},
    }


# --- Django-level errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/"),
        ("get", "/nope"),
        ("post", "/nope"),
        ("get", "/healthz/"),
        ("post", "/users/auth-code/"),
        ("get", "/users/"),
        ("get", "/users/abc/devices"),
        ("get", "/sdk"),
        ("delete", "/sdk/users/5a18fc4b0962209e0000000d"),
        ("get", "/%00"),
        ("get", "/%FF%FE"),
    ],
)
def test_an_unknown_path_is_a_json_not_found(api, method, path):
    body = assert_envelope(getattr(api, method)(path), 404, "NOT_FOUND")
    assert body["message"].startswith("No such path: ")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/users/auth-code"),
        ("put", "/users/auth-code"),
        ("delete", "/users/auth-code"),
        ("post", "/users"),
        ("patch", "/users/5a18fc4b0962209e0000000d"),
        ("get", "/sdk/users"),
        ("put", "/sdk/users"),
        ("patch", "/sdk/users"),
        ("post", "/healthz"),
        ("delete", "/readyz"),
        ("options", "/users/auth-code"),
        ("options", "/sdk/users"),
        ("post", "/api/schema/"),
        ("delete", "/api/docs/"),
        ("options", "/api/docs/"),
    ],
)
def test_a_wrong_method_is_a_json_method_not_allowed(customer, method, path):
    before = rows()
    response = getattr(customer, method)(path, {"external_id": "alice"}, format="json")
    body = assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert method.upper() in body["message"]
    assert "GET" in response["Allow"] or "POST" in response["Allow"]
    assert rows() == before


def test_an_unknown_method_is_a_json_method_not_allowed(customer):
    assert_envelope(customer.generic("BREW", "/users/auth-code"), 405, "METHOD_NOT_ALLOWED")


def test_a_disallowed_host_is_a_json_bad_request(api):
    body = assert_envelope(api.get("/healthz", HTTP_HOST="evil.example"), 400, "INVALID_REQUEST")
    assert "evil" not in body["message"]


@pytest.mark.parametrize(
    "query", ["?format=xml", "?format=", "?format=api", "?format=%00"], ids=repr
)
def test_an_unknown_format_parameter_still_answers_json(api, query):
    response = api.get("/healthz" + query, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


def test_an_unsatisfiable_accept_header_on_an_error_still_gets_the_envelope(customer):
    response = customer.get("/users?external_id=nobody", HTTP_ACCEPT="application/xml")
    assert_envelope(response, 404, "USER_NOT_FOUND")


@pytest.mark.parametrize(
    ("query", "content_type"),
    [
        ("?format=json", "application/vnd.oai.openapi+json"),
        ("", "application/vnd.oai.openapi"),
    ],
)
def test_the_schema_still_negotiates_its_own_formats(api, query, content_type):
    response = api.get("/api/schema/" + query)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)


def test_admin_pages_stay_html(api, admin_client):
    login = api.get("/admin/login/")
    assert login.status_code == 200
    assert login["Content-Type"].startswith("text/html")
    missing = admin_client.get("/admin/no-such-page/")
    assert missing.status_code == 404
    assert missing["Content-Type"].startswith("text/html")
    assert missing["X-Request-ID"]


# --- crashes and outages --------------------------------------------------------------------------


def _raise(exc: Exception):
    def raiser(*args, **kwargs):
        raise exc

    return raiser


def test_a_crash_in_a_customer_call_is_a_json_internal_error(crashing, api_key, monkeypatch):
    monkeypatch.setattr(account_services, "issue_auth_code", _raise(RuntimeError("secret detail")))
    crashing.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    response = crashing.post("/users/auth-code", {"external_id": "alice"}, format="json")
    body = assert_envelope(response, 500, "INTERNAL_ERROR")
    assert "secret detail" not in response.content.decode()
    assert body["message"] == "Internal error; quote the request id to support."


def test_a_crash_echoes_the_incoming_request_id(crashing, auth_code, monkeypatch):
    monkeypatch.setattr(device_services, "redeem_auth_code", _raise(KeyError("boom")))
    response = crashing.post(
        "/sdk/users", _redemption(auth_code), format="json", HTTP_X_REQUEST_ID="support-42"
    )
    assert assert_envelope(response, 500, "INTERNAL_ERROR")["request_id"] == "support-42"


def test_a_crash_half_way_through_a_redemption_writes_nothing(crashing, auth_code, monkeypatch):
    """The policy step fails after the code was consumed and the user marked active: all of it
    is rolled back, so the code can still be redeemed."""
    monkeypatch.setattr(device_services, "decide", _raise(RuntimeError("boom")))
    before = rows()
    assert_envelope(
        crashing.post("/sdk/users", _redemption(auth_code), format="json"), 500, "INTERNAL_ERROR"
    )
    assert rows() == before
    auth_code.refresh_from_db()
    auth_code.user.refresh_from_db()
    assert (auth_code.status, auth_code.redeemed_at) == (AuthCodeStatus.ISSUED, None)
    assert auth_code.user.status == UserStatus.PENDING
    monkeypatch.undo()
    assert crashing.post("/sdk/users", _redemption(auth_code), format="json").status_code == 201


@pytest.mark.parametrize(
    "error",
    [OperationalError("could not connect to server"), InterfaceError("connection already closed")],
)
def test_a_database_outage_is_service_unavailable(crashing, api_key, monkeypatch, error):
    monkeypatch.setattr(account_services, "issue_auth_code", _raise(error))
    crashing.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    response = crashing.post("/users/auth-code", {"external_id": "alice"}, format="json")
    body = assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
    assert "connect" not in body["message"]


def test_a_database_outage_during_authentication_is_service_unavailable(
    crashing, api_key, monkeypatch
):
    monkeypatch.setattr(
        "accounts.authentication.selectors.api_key_for", _raise(OperationalError("gone"))
    )
    crashing.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    response = crashing.get("/users?external_id=alice")
    assert_envelope(response, 503, "SERVICE_UNAVAILABLE")


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            OperationalError(
                'invalid dsn: "postgres://portal:hunter2@db/portal"\nHINT: check the URL'
            ),
            'database unavailable: OperationalError: invalid dsn: "postgres://portal:***@db/portal"',
        ),
        (
            redis.ConnectionError("Error 111 connecting to redis:6379. Connection refused."),
            "redis unavailable: ConnectionError: Error 111 connecting to redis:6379. "
            "Connection refused.",
        ),
    ],
)
def test_a_backing_service_error_logs_one_line_naming_the_service_and_the_error(
    crashing, api_key, monkeypatch, caplog, error, line
):
    monkeypatch.setattr("accounts.authentication.selectors.api_key_for", _raise(error))
    crashing.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    assert_envelope(crashing.get("/users?external_id=alice"), 503, "SERVICE_UNAVAILABLE")
    [record] = [record for record in caplog.records if record.name == "portal.errors"]
    assert record.getMessage() == line  # the first line only, the password masked
    assert record.exc_info is None


@pytest.mark.parametrize(
    "error",
    [redis.ConnectionError("refused"), redis.TimeoutError("slow"), redis.ResponseError("OOM")],
)
def test_a_rate_limit_store_error_lets_the_request_through(crashing, auth_code, monkeypatch, error):
    """The limits only protect: whatever Redis answers with, the redemption goes on (the real
    outages, a killed and a frozen Redis: test_redis_faults.py)."""
    failing = types.SimpleNamespace(hit=_raise(error))
    monkeypatch.setattr(throttling.store, "counters", lambda: failing)
    response = crashing.post("/sdk/users", _redemption(auth_code), format="json")
    assert response.status_code == 201, response.content
    assert Device.objects.count() == 1


# --- request ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/healthz", 200),
        ("get", "/readyz", 200),
        ("post", "/users/auth-code", 401),
        ("post", "/sdk/users", 400),
        ("get", "/nope", 404),
        ("put", "/sdk/users", 405),
        ("get", "/api/schema/", 200),
        ("get", "/admin/login/", 200),
    ],
)
def test_every_answer_carries_a_fresh_request_id(api, method, path, status):
    first = getattr(api, method)(path)
    second = getattr(api, method)(path)
    assert first.status_code == second.status_code == status
    assert FRESH_ID.fullmatch(first["X-Request-ID"])
    assert FRESH_ID.fullmatch(second["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.parametrize(
    "incoming", ["abc-123", "a" * 128, "req.1:2_3", "0", "5A18FC4B-0962-209E-0000-000D00000000"]
)
def test_a_well_formed_request_id_is_echoed(api, incoming):
    ok = api.get("/healthz", HTTP_X_REQUEST_ID=incoming)
    assert ok["X-Request-ID"] == incoming
    error = api.post("/sdk/users", {}, format="json", HTTP_X_REQUEST_ID=incoming)
    assert assert_envelope(error, 400, "INVALID_REQUEST")["request_id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "a" * 129,
        "has space",
        " padded",
        "café",
        "id\n",
        "id\r\nSet-Cookie: x=1",
        "a;b",
        "<script>",
        "id\x00",
        "",
    ],
    ids=repr,
)
def test_a_malformed_request_id_is_replaced(api, incoming):
    response = api.post("/sdk/users", {}, format="json", HTTP_X_REQUEST_ID=incoming)
    body = assert_envelope(response, 400, "INVALID_REQUEST")
    assert FRESH_ID.fullmatch(response["X-Request-ID"])
    assert body["request_id"] == response["X-Request-ID"] != incoming


# --- API keys -------------------------------------------------------------------------------------


def _call_with(api: APIClient, authorization: str | None):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    return api.post("/users/auth-code", {"external_id": "alice"}, format="json", **headers)


def _other_secret(full_key: str) -> str:
    key_id, secret = full_key.split(".")
    return f"{key_id}.{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("Bearer", id="scheme-only"),
        pytest.param("Bearer    ", id="blank-credentials"),
        pytest.param("Basic {key}", id="basic-scheme"),
        pytest.param("Token {key}", id="token-scheme"),
        pytest.param("{key}", id="no-scheme"),
        pytest.param("Bearer {key_id}", id="key-id-only"),
        pytest.param("Bearer {key_id}.", id="empty-secret"),
        pytest.param("Bearer .{secret}", id="empty-key-id"),
        pytest.param("Bearer {key_id}{secret}", id="no-dot"),
        pytest.param("Bearer {KEY_ID}.{secret}", id="upper-case-key-id"),
        pytest.param("Bearer {key_id}.{secret}.x", id="extra-part"),
        pytest.param("Bearer {key_id}.short", id="short-secret"),
        pytest.param("Bearer {key_id}.{secret}\x00", id="nul"),
        pytest.param("Bearer {key_id}.{secret}é", id="non-ascii"),
        pytest.param("Bearer " + "x" * 5000, id="huge"),
        pytest.param("Bearer 0123456789abcdef.{secret}", id="unknown-key-id"),
        pytest.param("Bearer {other}", id="wrong-secret"),
    ],
)
def test_a_missing_malformed_unknown_or_wrong_key_is_invalid(api, api_key, authorization):
    if authorization is not None:
        key_id, secret = api_key.full_key.split(".")
        authorization = authorization.format(
            key=api_key.full_key,
            key_id=key_id,
            KEY_ID=key_id.upper(),
            secret=secret,
            other=_other_secret(api_key.full_key),
        )
    before = rows()
    response = _call_with(api, authorization)
    assert_envelope(response, 401, "INVALID_API_KEY")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert rows() == before


def test_the_scheme_is_case_insensitive(api, api_key):
    assert _call_with(api, f"bearer {api_key.full_key}").status_code == 200


@pytest.mark.parametrize(
    ("past", "code"),
    [
        (["revoked_at"], "API_KEY_REVOKED"),
        (["expires_at"], "API_KEY_EXPIRED"),
        (["revoked_at", "expires_at"], "API_KEY_REVOKED"),
    ],
)
def test_a_revoked_or_expired_key_is_named_only_with_the_right_secret(api, app, past, code):
    moment = timezone.now() - dt.timedelta(seconds=1)
    api_key = ApiKeyFactory(app=app, **dict.fromkeys(past, moment))
    before = rows()
    assert_envelope(_call_with(api, f"Bearer {api_key.full_key}"), 401, code)
    wrong = _call_with(api, f"Bearer {_other_secret(api_key.full_key)}")
    assert_envelope(wrong, 401, "INVALID_API_KEY")
    assert rows() == before


@pytest.mark.parametrize(
    ("scopes", "method", "path"),
    [
        ([Scope.USER_READ, Scope.USER_DELETE], "post", "/users/auth-code"),
        ([Scope.USER_LINK], "get", "/users?external_id=alice"),
        ([Scope.USER_LINK, Scope.USER_DELETE], "get", "/users/5a18fc4b0962209e0000000d"),
        ([Scope.USER_READ], "delete", "/users/5a18fc4b0962209e0000000d"),
    ],
)
def test_a_key_without_the_scope_is_refused(api, app, scopes, method, path):
    api_key = ApiKeyFactory(app=app, scopes=scopes)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    before = rows()
    response = getattr(api, method)(path, {"external_id": "alice"}, format="json")
    body = assert_envelope(response, 403, "INSUFFICIENT_SCOPE")
    assert "user." in body["message"]
    assert rows() == before


def test_a_key_of_a_disabled_app_is_refused(api, app, api_key):
    app.is_active = False
    app.save(update_fields=["is_active"])
    before = rows()
    assert_envelope(_call_with(api, f"Bearer {api_key.full_key}"), 403, "APP_DISABLED")
    wrong = _call_with(api, f"Bearer {_other_secret(api_key.full_key)}")
    assert_envelope(wrong, 401, "INVALID_API_KEY")
    assert rows() == before


def test_a_refused_key_is_not_marked_as_used(api, api_key):
    _call_with(api, f"Bearer {_other_secret(api_key.full_key)}")
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is None


# --- rate limits ----------------------------------------------------------------------------------

WINDOW_START = 1_800_000_000.0  # a multiple of 60: the start of a fixed one-minute window


@pytest.fixture
def clock(monkeypatch) -> types.SimpleNamespace:
    """The throttles' clock, frozen so a test never straddles a window boundary."""
    now = types.SimpleNamespace(value=WINDOW_START + 30)
    frozen = types.SimpleNamespace(time=lambda: now.value, monotonic=time.monotonic)
    monkeypatch.setattr("portal.throttling.time", frozen)
    return now


def _issue(client: APIClient, external_id: str):
    return client.post("/users/auth-code", {"external_id": external_id}, format="json")


@override_settings(THROTTLE_API_KEY_RATE="3/min")
def test_the_api_key_rate_limit(customer, app, clock):
    assert [_issue(customer, "alice").status_code for _ in range(3)] == [200] * 3
    before = rows()
    response = _issue(customer, "bob")
    body = assert_envelope(response, 429, "RATE_LIMITED")
    assert response["Retry-After"] == "30"
    assert "30 seconds" in body["message"]
    assert rows() == before
    assert customer.get("/users?external_id=alice").status_code == 429  # per key, any endpoint

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiKeyFactory(app=app).full_key}")
    assert _issue(other, "bob").status_code == 200

    clock.value = WINDOW_START + 60  # the next window
    assert _issue(customer, "bob").status_code == 200


@override_settings(THROTTLE_API_KEY_RATE="3/min")
def test_retry_after_is_whole_seconds_and_at_least_one(customer, clock):
    clock.value = WINDOW_START + 59.75
    for _ in range(3):
        customer.get("/users?external_id=alice")
    response = customer.get("/users?external_id=alice")
    assert_envelope(response, 429, "RATE_LIMITED")
    assert response["Retry-After"] == "1"


@override_settings(THROTTLE_SDK_RATE="3/min")
def test_the_sdk_rate_limit_is_per_client_address(api, auth_code, clock):
    for _ in range(3):
        assert_envelope(api.post("/sdk/users", {}, format="json"), 400, "INVALID_REQUEST")
    response = api.post("/sdk/users", _redemption(auth_code), format="json")
    assert_envelope(response, 429, "RATE_LIMITED")
    assert int(response["Retry-After"]) == 30
    assert Device.objects.count() == 0

    # A forwarded-for header the client writes itself does not make it another client.
    spoofed = api.post("/sdk/users", {}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert_envelope(spoofed, 429, "RATE_LIMITED")

    elsewhere = api.post(
        "/sdk/users", _redemption(auth_code), format="json", REMOTE_ADDR="10.1.2.3"
    )
    assert elsewhere.status_code == 201, elsewhere.content


def test_behind_a_proxy_the_forwarded_address_is_the_client(api, clock, settings):
    # One mechanism for both changes: mixing override_settings with the `settings` fixture
    # restores them out of order and leaks the low rate into later tests.
    settings.THROTTLE_SDK_RATE = "2/min"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for _ in range(2):
        api.post("/sdk/users", {}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy)
    refused = api.post("/sdk/users", {}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy)
    assert_envelope(refused, 429, "RATE_LIMITED")
    # Only the hop our proxy appended counts, not what the client wrote before it.
    other = api.post(
        "/sdk/users", {}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7", **proxy
    )
    assert_envelope(other, 400, "INVALID_REQUEST")


# --- health checks --------------------------------------------------------------------------------


def test_healthz_answers_without_touching_the_database(api, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["X-Request-ID"]


# /readyz: tests/portal/test_readiness.py


def test_every_error_code_carries_the_contracts_status_and_a_message() -> None:
    """The status of each code sits beside its definition; this pins it to the contract."""
    contract = {
        "INVALID_REQUEST": 400,
        "INVALID_AUTH_CODE": 400,
        "INVALID_API_KEY": 401,
        "API_KEY_EXPIRED": 401,
        "API_KEY_REVOKED": 401,
        "INVALID_ACCESS_TOKEN": 401,
        "INSUFFICIENT_SCOPE": 403,
        "APP_DISABLED": 403,
        "USER_DISABLED": 403,
        "USER_NOT_FOUND": 404,
        "NOT_FOUND": 404,
        "METHOD_NOT_ALLOWED": 405,
        "AUTH_CODE_ALREADY_USED": 409,
        "INSTALL_ID_CONFLICT": 409,
        "AUTH_CODE_EXPIRED": 410,
        "PAYLOAD_TOO_LARGE": 413,
        "UNSUPPORTED_MEDIA_TYPE": 415,
        "RATE_LIMITED": 429,
        "INTERNAL_ERROR": 500,
        "SERVICE_UNAVAILABLE": 503,
    }
    assert {code.value: code.status for code in ErrorCode} == contract
    assert all(code.message.endswith(".") for code in ErrorCode)
    error = DomainError(ErrorCode.USER_NOT_FOUND)
    assert (error.status, error.message, str(error)) == (
        404,
        "No such user in this app.",
        error.message,
    )


def test_a_service_refusal_reads_the_same_in_the_service_the_admin_and_a_command(
    api_key, admin_client
) -> None:
    """One exception, one message: the rotation refusal of a revoked key, three ways."""
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    api_key.refresh_from_db()
    with pytest.raises(DomainError) as refused:
        account_services.check_rotatable(api_key)
    message = refused.value.message
    assert message == f"key {api_key.key_id} is revoked; create a new key instead"
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("rotate_api_key", api_key.key_id, "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"error": message}
    page = admin_client.get(
        reverse("admin:accounts_apikey_staff_action", args=["rotate"]) + f"?ids={api_key.pk}"
    )
    assert message in page.content.decode()
