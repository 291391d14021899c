"""No client input, however malformed, produces a 500, a non-envelope answer or a write.

Covers the two write endpoints (POST /users/auth-code, POST /sdk/users) and the lookup
GET /users?external_id=…. Every refusal is checked for its contract code, the envelope
(request id equal to the X-Request-ID header) and unchanged LinkedUser/AuthCode/Device rows.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import AuthCode, AuthCodeStatus, LinkedUser
from devices.models import Device
from tests.factories import AuthCodeFactory, LinkedUserFactory
from tests.portal.test_errors import assert_envelope, rows

pytestmark = pytest.mark.django_db

AUTH_CODE = "/users/auth-code"
REDEEM = "/sdk/users"
MAX_BODY = 64 * 1024
MISSING = object()


def post_raw(
    client: APIClient, path: str, body: bytes, content_type: str = "application/json", **extra
):
    return client.generic("POST", path, data=body, content_type=content_type, **extra)


def post_json(client: APIClient, path: str, payload: Any):
    # json.dumps escapes lone surrogates ("\\ud800"), which the test client's encoder cannot.
    return post_raw(client, path, json.dumps(payload).encode())


def altered(payload: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of the payload with `device.platform` (say) set to value, or removed."""
    result = copy.deepcopy(payload)
    *parents, leaf = dotted.split(".")
    target = result
    for name in parents:
        target = target[name]
    if value is MISSING:
        del target[leaf]
    else:
        target[leaf] = value
    return result


@dataclass
class Endpoint:
    client: APIClient
    path: str
    valid: dict[str, Any]
    success: int


@pytest.fixture
def auth_code(app):
    return AuthCodeFactory(user__app=app)


@pytest.fixture
def redemption(auth_code, app) -> dict[str, Any]:
    return {
        "authentication_code": auth_code.code,
        "app_id": app.app_id,
        "device": {"install_id": "install-0001", "platform": "android", "form_factor": "phone"},
    }


@pytest.fixture(params=["auth-code", "redeem"])
def endpoint(request, customer, api, redemption) -> Endpoint:
    if request.param == "auth-code":
        return Endpoint(customer, AUTH_CODE, {"external_id": "alice"}, 200)
    return Endpoint(api, REDEEM, redemption, 201)


def refused(response, before, status: int = 400, code: str = "INVALID_REQUEST") -> dict:
    body = assert_envelope(response, status, code)
    assert rows() == before, "a refused request wrote rows"
    assert AuthCode.objects.exclude(status=AuthCodeStatus.ISSUED).count() == 0, "code consumed"
    return body


# --- the body as a whole --------------------------------------------------------------------------


def test_the_valid_body_is_accepted_and_writes(endpoint):
    """The control for every refusal below: the same endpoint with a good body succeeds."""
    before = rows()
    response = post_json(endpoint.client, endpoint.path, endpoint.valid)
    assert response.status_code == endpoint.success, response.content
    assert rows() != before


def _utf16(payload: dict[str, Any], codec: str) -> bytes:
    return json.dumps(payload).encode(codec)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"external_id": ', id="truncated"),
        pytest.param(b"{'external_id': 'alice'}", id="single-quotes"),
        pytest.param(b'{"external_id": "alice",}', id="trailing-comma"),
        pytest.param(b'{"external_id": "alice"} {}', id="trailing-data"),
        pytest.param(b"   ", id="only-whitespace"),
        pytest.param(b'{"external_id": NaN}', id="nan"),
        pytest.param(b'{"external_id": Infinity}', id="infinity"),
        pytest.param(b'{"external_id": -Infinity}', id="minus-infinity"),
        pytest.param(b'{"external_id": ' + b"9" * 5000 + b"}", id="huge-integer"),
        pytest.param(b'{"external_id": "\xff\xfe"}', id="invalid-utf8"),
        pytest.param(b'{"external_id": "\xed\xa0\x80"}', id="utf8-encoded-surrogate"),
        pytest.param(b'{"external_id": "a\x00b"}', id="raw-nul-in-string"),
        pytest.param(b'{"external_id": "a\x07b"}', id="raw-bell-in-string"),
        pytest.param(b'{"external_id": "a\nb"}', id="raw-newline-in-string"),
        pytest.param(b"\xef\xbb\xbf" + b'{"external_id": "alice"}', id="utf8-bom"),
        pytest.param(_utf16({"external_id": "alice"}, "utf-16"), id="utf16-with-bom"),
        pytest.param(_utf16({"external_id": "alice"}, "utf-16-le"), id="utf16-le"),
        pytest.param(_utf16({"external_id": "alice"}, "utf-32"), id="utf32"),
        pytest.param(b"[" * 60000, id="deeply-nested"),
    ],
)
def test_a_body_that_is_not_json_is_invalid(endpoint, body):
    before = rows()
    envelope = refused(post_raw(endpoint.client, endpoint.path, body), before)
    assert "fields" not in envelope  # a parse error, not a field's


@pytest.mark.parametrize(
    "body", [b"[]", b'[{"external_id": "alice"}]', b'"alice"', b"42", b"4.2", b"true", b"null"]
)
def test_json_that_is_not_an_object_is_invalid(endpoint, body):
    before = rows()
    envelope = refused(post_raw(endpoint.client, endpoint.path, body), before)
    assert list(envelope["fields"]) == ["non_field_errors"]


def test_an_empty_body_reports_the_required_fields(endpoint):
    before = rows()
    envelope = refused(post_raw(endpoint.client, endpoint.path, b""), before)
    assert set(envelope["fields"]) == set(endpoint.valid)
    assert all(messages == ["This field is required."] for messages in envelope["fields"].values())


def test_nesting_beyond_the_body_limit_is_too_large_and_within_it_invalid(endpoint):
    before = rows()
    refused(
        post_raw(endpoint.client, endpoint.path, b"[" * 100_000), before, 413, "PAYLOAD_TOO_LARGE"
    )
    with override_settings(API_MAX_BODY_BYTES=1024 * 1024):
        body = refused(post_raw(endpoint.client, endpoint.path, b"[" * 100_000), before)
    assert body["message"] == "The JSON is nested too deeply."


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        ("text/plain", json.dumps),
        ("text/json", json.dumps),
        ("application/xml", lambda payload: "<external_id>alice</external_id>"),
        ("application/x-www-form-urlencoded", lambda payload: "external_id=alice"),
        ("multipart/form-data; boundary=BoUnDaRy", lambda payload: "--BoUnDaRy--\r\n"),
        ("application/octet-stream", json.dumps),
        ("", json.dumps),
    ],
)
def test_a_body_that_is_not_declared_json_is_unsupported(endpoint, content_type, encode):
    before = rows()
    body = encode(endpoint.valid).encode()
    refused(
        post_raw(endpoint.client, endpoint.path, body, content_type),
        before,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )


def test_a_multipart_form_is_unsupported(endpoint):
    before = rows()
    response = endpoint.client.post(endpoint.path, {"external_id": "alice"}, format="multipart")
    refused(response, before, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8"]
)
def test_json_with_a_charset_parameter_is_accepted(endpoint, content_type):
    body = json.dumps(endpoint.valid).encode()
    response = post_raw(endpoint.client, endpoint.path, body, content_type)
    assert response.status_code == endpoint.success, response.content


def _padded(payload: dict[str, Any], size: int) -> bytes:
    body = json.dumps(payload).encode()
    return body + b" " * (size - len(body))


def test_a_body_of_exactly_the_limit_is_accepted(endpoint):
    response = post_raw(endpoint.client, endpoint.path, _padded(endpoint.valid, MAX_BODY))
    assert response.status_code == endpoint.success, response.content


def test_a_body_over_the_limit_is_too_large(endpoint):
    before = rows()
    response = post_raw(endpoint.client, endpoint.path, _padded(endpoint.valid, MAX_BODY + 1))
    body = refused(response, before, 413, "PAYLOAD_TOO_LARGE")
    assert str(MAX_BODY) in body["message"]


def test_a_body_far_over_the_limit_is_too_large(endpoint):
    before = rows()
    payload = {**endpoint.valid, "padding": "x" * (5 * 1024 * 1024)}
    refused(post_json(endpoint.client, endpoint.path, payload), before, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("length", ["abc", "-1", "+5", "1_0", " 12", "1e3", "\uff10"])
def test_a_malformed_content_length_is_invalid(endpoint, length):
    before = rows()
    body = json.dumps(endpoint.valid).encode()
    response = post_raw(endpoint.client, endpoint.path, body, CONTENT_LENGTH=length)
    envelope = refused(response, before)
    assert envelope["message"] == "Malformed Content-Length."


def test_a_content_length_claiming_too_much_is_refused_before_reading(endpoint):
    before = rows()
    body = json.dumps(endpoint.valid).encode()
    response = post_raw(endpoint.client, endpoint.path, body, CONTENT_LENGTH="9" * 30)
    refused(response, before, 413, "PAYLOAD_TOO_LARGE")


def test_a_content_length_shorter_than_the_body_cuts_it(endpoint):
    before = rows()
    body = json.dumps(endpoint.valid).encode()
    response = post_raw(endpoint.client, endpoint.path, body, CONTENT_LENGTH="5")
    assert refused(response, before)["message"].startswith("Malformed JSON")


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/png"])
def test_an_unsatisfiable_accept_header_still_gets_json(endpoint, accept):
    response = endpoint.client.generic(
        "POST",
        endpoint.path,
        json.dumps(endpoint.valid).encode(),
        content_type="application/json",
        HTTP_ACCEPT=accept,
    )
    assert response.status_code == endpoint.success, response.content
    assert response["Content-Type"] == "application/json"


# --- POST /users/auth-code ------------------------------------------------------------------------

CONTROL_AND_SURROGATES = [
    pytest.param("\u0000", id="nul"),
    pytest.param("alice\u0000", id="trailing-nul"),
    pytest.param("\u0007", id="bell"),
    pytest.param("ali\nce", id="newline"),
    pytest.param("alice\r\n", id="crlf"),
    pytest.param("\talice", id="tab"),
    pytest.param("\u001b[31m", id="escape"),
    pytest.param("\u007f", id="delete"),
    pytest.param("\u0085", id="c1-next-line"),
    pytest.param("\ud800", id="lone-high-surrogate"),
    pytest.param("a\udfffb", id="lone-low-surrogate"),
]


@pytest.mark.parametrize(
    ("external_id", "message"),
    [
        pytest.param("x" * 257, "must be at most 256 characters", id="257-chars"),
        pytest.param("用" * 257, "must be at most 256 characters", id="257-cjk-chars"),
        pytest.param("", "must not be blank", id="empty"),
        pytest.param(None, "This field may not be null.", id="null"),
        pytest.param(42, "must be a string", id="integer"),
        pytest.param(4.5, "must be a string", id="float"),
        pytest.param(True, "must be a string", id="true"),
        pytest.param(False, "must be a string", id="false"),
        pytest.param(["alice"], "must be a string", id="list"),
        pytest.param({"id": "alice"}, "must be a string", id="object"),
        *[
            pytest.param(*param.values, "must not contain control characters", id=param.id)
            for param in CONTROL_AND_SURROGATES
        ],
    ],
)
def test_a_bad_external_id_is_invalid(customer, external_id, message):
    before = rows()
    body = refused(post_json(customer, AUTH_CODE, {"external_id": external_id}), before)
    assert body["fields"] == {"external_id": [message]}
    assert body["message"] == f"external_id: {message}"


@pytest.mark.parametrize(
    "external_id",
    [
        pytest.param("x" * 256, id="256-chars"),
        pytest.param("Zoë 用户", id="non-ascii"),
        pytest.param("用" * 256, id="256-cjk-chars"),
        pytest.param("😀" * 256, id="256-astral-chars"),
        pytest.param(" alice ", id="kept-as-sent"),
        pytest.param("a\u200bb\u2028c", id="format-and-separator-chars"),
    ],
)
def test_any_printable_external_id_up_to_256_characters_works(customer, app, external_id):
    response = post_json(customer, AUTH_CODE, {"external_id": external_id})
    assert response.status_code == 200, response.content
    user = LinkedUser.objects.get(user_id=response.json()["user_id"])
    assert (user.app, user.external_id) == (app, external_id)
    found = customer.get("/users", {"external_id": external_id})
    assert found.status_code == 200, found.content
    assert found.json()["external_id"] == external_id


def test_unknown_fields_are_ignored(customer, app):
    stranger = LinkedUserFactory()
    payload = {
        "external_id": "alice",
        "user_id": stranger.user_id,
        "app_id": stranger.app.app_id,
        "existing_user": True,
        "nested": {"deep": [1, 2, {"x": None}]},
    }
    response = post_json(customer, AUTH_CODE, payload)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["user_id"] != stranger.user_id
    assert body["existing_user"] is False
    assert LinkedUser.objects.get(user_id=body["user_id"]).app == app


# --- POST /sdk/users ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("authentication_code", 12345),
        ("authentication_code", None),
        ("authentication_code", ["code"]),
        ("authentication_code", "\u0000"),
        ("authentication_code", "\ud800"),
        ("authentication_code", "x" * 129),
        ("authentication_code", ""),
        ("app_id", True),
        ("app_id", {"id": 1}),
        ("app_id", "x" * 65),
        ("app_id", "app\n"),
        ("device", None),
        ("device", "phone"),
        ("device", []),
        ("device", 7),
        ("device.install_id", "short12"),
        ("device.install_id", "x" * 65),
        ("device.install_id", "has space"),
        ("device.install_id", "slash/0001"),
        ("device.install_id", "dot.0001"),
        ("device.install_id", "ünicode01"),
        ("device.install_id", "install-0001\n"),
        ("device.install_id", "install\u00000001"),
        ("device.install_id", 12345678),
        ("device.install_id", ""),
        ("device.platform", "windows"),
        ("device.platform", "Android"),
        ("device.platform", ""),
        ("device.platform", 1),
        ("device.platform", None),
        ("device.platform", ["android"]),
        ("device.platform", {"name": "android"}),
        ("device.platform", "android\u0000"),
        ("device.platform", "\ud800"),
        ("device.form_factor", "watch"),
        ("device.form_factor", "PHONE"),
        ("device.form_factor", False),
        ("device.model", "m" * 129),
        ("device.model", None),
        ("device.model", 9),
        ("device.model", "Pixel\u0007"),
        ("device.os_version", 15),
        ("device.os_version", "15\n"),
        ("device.app_version", ["4", "2"]),
        ("device.app_version", "\udc00"),
        ("device.sdk_version", 2.3),
        ("device.sdk_version", "v" * 129),
    ],
)
def test_a_bad_redemption_field_is_invalid(api, redemption, field, value):
    before = rows()
    response = post_json(api, REDEEM, altered(redemption, field, value))
    body = refused(response, before)
    assert list(body["fields"]) == [field]
    assert body["message"].startswith(f"{field}: ")


def test_a_lone_surrogate_quoted_back_by_an_error_is_escaped(api, redemption):
    """ChoiceField quotes the input; a raw surrogate in the answer could not be encoded."""
    response = post_json(api, REDEEM, altered(redemption, "device.platform", "x\ud800"))
    body = refused(response, rows())
    assert body["fields"] == {"device.platform": ['"x\\ud800" is not a valid choice.']}
    # Valid Unicode on the wire: no lone surrogate, not even as a JSON escape.
    assert not any(0xD800 <= ord(char) <= 0xDFFF for char in body["message"])


@pytest.mark.parametrize(
    "field",
    [
        "authentication_code",
        "app_id",
        "device",
        "device.install_id",
        "device.platform",
        "device.form_factor",
    ],
)
def test_a_missing_redemption_field_is_named(api, redemption, field):
    before = rows()
    body = refused(post_json(api, REDEEM, altered(redemption, field, MISSING)), before)
    assert body["fields"] == {field: ["This field is required."]}


def test_every_bad_field_is_reported_at_once(api, redemption):
    payload = altered(redemption, "device.platform", "windows")
    payload = altered(payload, "device.form_factor", "watch")
    payload = altered(payload, "app_id", 5)
    body = refused(post_json(api, REDEEM, payload), rows())
    assert set(body["fields"]) == {"app_id", "device.platform", "device.form_factor"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device.install_id", "a" * 8),
        ("device.install_id", "Az09_-" * 10 + "abcd"),
        ("device.model", "m" * 128),
        ("device.model", ""),
        ("device.os_version", "Zoë 用户 😀"),
    ],
)
def test_boundary_and_optional_redemption_fields_are_accepted(api, redemption, field, value):
    payload = altered(redemption, field, value)
    response = post_json(api, REDEEM, payload)
    assert response.status_code == 201, response.content
    device = Device.objects.get()
    name = field.removeprefix("device.")
    assert getattr(device, name) == value
    assert response.json()["device"][name] == getattr(device, name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device.is_active", False),
        ("device.inactive_reason", "RESET"),
        ("device.user_id", "5a18fc4b0962209e0000000d"),
        ("user_id", "5a18fc4b0962209e0000000d"),
        ("restored", True),
        ("config", {"evil": True}),
    ],
)
def test_unknown_redemption_fields_are_ignored(api, redemption, auth_code, field, value):
    response = post_json(api, REDEEM, altered(redemption, field, value))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["user_id"], body["restored"]) == (auth_code.user.user_id, False)
    assert body["config"] == auth_code.app.sdk_config
    device = Device.objects.get()
    assert (device.user, device.is_active, device.inactive_reason) == (auth_code.user, True, None)


# --- GET /users?external_id=… ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("", "This field is required.", id="missing"),
        pytest.param("?other=alice", "This field is required.", id="other-parameter"),
        pytest.param("?external_id=", "must not be blank", id="empty"),
        pytest.param("?external_id=" + "x" * 257, "must be at most 256 characters", id="257"),
        pytest.param(
            "?external_id=" + "%E7%94%A8" * 257, "must be at most 256 characters", id="cjk"
        ),
        pytest.param("?external_id=%00", "must not contain control characters", id="nul"),
        pytest.param("?external_id=a%07b", "must not contain control characters", id="bell"),
        pytest.param("?external_id=alice%0A", "must not contain control characters", id="newline"),
        pytest.param("?external_id=%C2%85", "must not contain control characters", id="c1"),
    ],
)
def test_a_bad_lookup_query_is_invalid(customer, query, message):
    LinkedUserFactory(app=customer.api_key.app, external_id="alice")
    before = rows()
    body = refused(customer.get("/users" + query), before)
    assert body["fields"] == {"external_id": [message]}


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("?external_id=%FF%FE", id="invalid-utf8"),
        pytest.param("?external_id=%ED%A0%80", id="utf8-encoded-surrogate"),
        pytest.param("?external_id=" + "x" * 256, id="256"),
        pytest.param("?external_id=%25%27%22;--", id="quotes"),
        pytest.param("?external_id[]=alice&external_id=bob", id="array-syntax"),
    ],
)
def test_a_well_formed_unknown_external_id_is_not_found(customer, query):
    LinkedUserFactory(app=customer.api_key.app, external_id="alice")
    assert_envelope(customer.get("/users" + query), 404, "USER_NOT_FOUND")


def test_the_last_of_repeated_external_ids_is_used(customer):
    LinkedUserFactory(app=customer.api_key.app, external_id="alice")
    response = customer.get("/users?external_id=bob&external_id=alice")
    assert response.status_code == 200
    assert response.json()["external_id"] == "alice"


def test_too_many_query_parameters_are_invalid(customer):
    query = "&".join(f"p{n}=1" for n in range(1500))
    assert_envelope(customer.get(f"/users?{query}&external_id=alice"), 400, "INVALID_REQUEST")
