"""The app pages under hostile input (issue 12 review): every bad value in a path, a query
string or a form is a form error, a 400 or a 404, never a server error, and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent
from console.models import Membership, Role
from console.views.config import version
from events import services as webhooks
from events.models import WebhookEndpoint
from tests.factories import ApiKeyFactory, LinkedUserFactory

pytestmark = pytest.mark.django_db

Member = Callable[..., tuple[Client, Membership]]


def url(name: str, membership: Membership, *args: object) -> str:
    return reverse(f"console:{name}", args=[membership.app.app_id, *args])


def owner(member: Member) -> tuple[Client, Membership]:
    """An owner whose server errors come back as 500 responses, as a browser would see them."""
    client, membership = member(Role.OWNER)
    client.raise_request_exception = False
    return client, membership


# --------------------------------------------------------------------------- paths and queries


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("overview", []),
        ("keys", []),
        ("key_rotate", ["k\x00"]),
        ("key_revoke", ["k\x00"]),
        ("user_detail", ["u\x00"]),
        ("user_delete", ["u\x00"]),
        ("deletion", ["r\x00"]),
        ("webhook_detail", ["w\x00"]),
        ("webhook_edit", ["w\x00"]),
    ],
)
def test_a_nul_in_an_id_of_the_path_is_not_found(member: Member, name: str, args: list) -> None:
    """PostgreSQL refuses NUL in text: such an id (of the app or of the object) must not reach
    a query. `%00` in a URL arrives as NUL."""
    client, membership = owner(member)
    path = url(name, membership, *args)
    if not args:
        path = path.replace(membership.app.app_id, membership.app.app_id[:5] + "\x00")
    assert client.get(path).status_code == 404
    assert client.post(path).status_code == 404


def test_a_nul_in_the_user_search_finds_nobody(member: Member) -> None:
    client, membership = owner(member)
    LinkedUserFactory(app=membership.app, external_id="a")
    response = client.get(url("users", membership), {"q": "a\x00"})
    assert response.status_code == 200
    assert response.context["users"] == []


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"until": "9999-12-31"}, True),
        ({"since": "9999-12-31", "until": "9999-12-31"}, False),
        ({"since": "0001-01-01"}, True),
        ({"before": "9999-12-31T23:59:59-14:00~1"}, True),
        ({"before": "0001-01-01T00:00:00+14:00~1"}, False),
        ({"before": "2100-01-01T00:00:00+00:00~" + "9" * 30}, True),
        ({"before": "2100-01-01T00:00:00~5"}, None),  # no offset: not a cursor of ours
        ({"before": "~"}, None),
        ({"before": "x" * 100_000}, None),
        ({"since": "2020-02-30"}, None),
        ({"actor": "a\x00b"}, None),
        ({"actor": "x" * 100_000}, None),
        ({"action": "nope"}, None),
    ],
)
def test_audit_filters_and_cursors_out_of_range_or_malformed(
    member: Member, params: dict[str, str], shown: bool | None
) -> None:
    """`shown`: whether the app's one event is listed; None: the form says what is wrong."""
    client, membership = owner(member)
    AuditEvent.objects.create(
        app=membership.app, action=AuditAction.APP_UPDATED, actor="x", target_type="app"
    )
    response = client.get(url("audit", membership), params)
    assert response.status_code == 200
    if shown is None:
        assert response.context["form"].errors
        assert response.context["events"] == []
    else:
        assert len(response.context["events"]) == int(shown)


def test_redelivering_a_delivery_id_out_of_range_is_not_found(member: Member, settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    client, membership = owner(member)
    endpoint = webhooks.create_endpoint(
        app=membership.app, url="https://127.0.0.1:9/", actor=Actor.operator("t")
    ).endpoint
    path = url("webhook_redeliver", membership, endpoint.endpoint_id, 1)
    response = client.post(path.replace("/1/", "/" + "9" * 30 + "/"))
    assert response.status_code == 404


# --------------------------------------------------------------------------- SDK configuration


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "finite"),
        ('{"a": -Infinity}', "finite"),
        ('{"a": 1e999}', "finite"),
        ('{"a": ["\\u0000"]}', "NUL"),
        ('{"\\u0000": 1}', "NUL"),
        ('{"a": "\\ud800"}', "surrogate"),
        ('{"\\udfff": 1}', "surrogate"),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "nested at most"),
        ('{"a": ' + "[" * 5_000 + "]" * 5_000 + "}", "nested"),
        ('{"a": ' + "[" * 200_000 + "]" * 200_000 + "}", "nested too deeply"),
    ],
)
@pytest.mark.parametrize("button", ["preview", "save"])
def test_config_that_jsonb_or_the_page_cannot_hold_is_a_form_error(
    member: Member, text: str, message: str, button: str
) -> None:
    """Valid JSON that PostgreSQL's jsonb refuses (NaN, NUL), that UTF-8 cannot encode (a lone
    surrogate) or that is nested past the encoder's stack: a message on the form, nothing
    saved."""
    client, membership = owner(member)
    before = membership.app.sdk_config
    response = client.post(
        url("config", membership), {"config": text, "base": version(before), button: "1"}
    )
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["config"])
    membership.app.refresh_from_db()
    assert membership.app.sdk_config == before
    assert not AuditEvent.objects.filter(action=AuditAction.APP_UPDATED).exists()


def test_config_nested_to_the_limit_is_saved(member: Member) -> None:
    client, membership = owner(member)
    text = '{"a": ' + "[" * 31 + "]" * 31 + "}"
    base = version(membership.app.sdk_config)
    response = client.post(url("config", membership), {"config": text, "base": base, "save": "1"})
    assert response.status_code == 302
    membership.app.refresh_from_db()
    assert membership.app.sdk_config == json.loads(text)


# --------------------------------------------------------------------------- other forms


@pytest.mark.parametrize(
    "data",
    [
        {"expires_in_days": "-1"},
        {"expires_in_days": "9" * 400},
        {"expires_in_days": "1e3"},
        {"scopes": ["nope"]},
        {"scopes": []},
        {"name": "k\x00"},
        {"name": "x" * 100_000},
    ],
)
def test_key_creation_with_bad_input_is_a_form_error(member: Member, data: dict) -> None:
    client, membership = owner(member)
    nonce = client.get(url("key_create", membership)).context["form_nonce"]
    form = {"name": "k", "scopes": ["user_link"], "expires_in_days": "30", "form_nonce": nonce}
    response = client.post(url("key_create", membership), {**form, **data})
    assert response.status_code == 200
    assert response.context["form"].errors
    assert not membership.app.api_keys.exists()


@pytest.mark.parametrize("grace", ["-1", "169", "9" * 500, "1.5", "", "\x00"])
def test_key_rotation_with_a_bad_grace_is_a_form_error(member: Member, grace: str) -> None:
    client, membership = owner(member)
    key = ApiKeyFactory(app=membership.app)
    nonce = client.get(url("key_rotate", membership, key.key_id)).context["form_nonce"]
    response = client.post(
        url("key_rotate", membership, key.key_id), {"grace_hours": grace, "form_nonce": nonce}
    )
    assert response.status_code == 200
    assert response.context["form"].errors
    assert membership.app.api_keys.count() == 1


@pytest.mark.parametrize(
    "target",
    [
        "https://" + "a" * 64 + ".example.com/",
        "https://a..b/",
        "https://exa\x00mple.com/",
        "https://example.com:99999/",
        "https://[::1]/",
        "https://[fe80::1%25eth0]/",
        "https://2130706433/",
        "https://localhost./",
        "https://" + "a" * 3000 + ".com/",
        "http://example.com/",
        "javascript:alert(1)",
    ],
)
def test_webhook_creation_with_a_bad_url_is_a_form_error(member: Member, target: str) -> None:
    client, membership = owner(member)
    nonce = client.get(url("webhook_create", membership)).context["form_nonce"]
    response = client.post(
        url("webhook_create", membership),
        {"url": target, "all_events": "on", "form_nonce": nonce},
    )
    assert response.status_code == 200
    assert response.context["form"].errors
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("reason", ["x" * 100_000, "a\x00b"])
def test_disabling_with_a_bad_reason_changes_nothing(member: Member, reason: str) -> None:
    client, membership = owner(member)
    user = LinkedUserFactory(app=membership.app)
    response = client.post(url("user_disable", membership, user.user_id), {"reason": reason})
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_disabled


@pytest.mark.parametrize("typed", ["x" * 100_000, "a\x00b"])
def test_deleting_with_a_bad_confirmation_changes_nothing(member: Member, typed: str) -> None:
    client, membership = owner(member)
    user = LinkedUserFactory(app=membership.app)
    response = client.post(url("user_delete", membership, user.user_id), {"external_id": typed})
    assert response.status_code == 200
    user.refresh_from_db()
    assert user.deleted_at is None
