"""The app pages: what each shows and does, with the console actor in the audit trail, and a
fixed number of queries whatever the data size."""

from __future__ import annotations

import datetime as dt
import json
from html import unescape

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import (
    ActorType,
    ApiKey,
    AuditAction,
    AuditEvent,
    AuthCodeStatus,
    DeletionRequest,
    LinkedUser,
    UserStatus,
)
from console.models import Membership, Role
from devices.models import InactiveReason
from tests.factories import (
    ApiKeyFactory,
    AppFactory,
    AuthCodeFactory,
    DeletionRequestFactory,
    DeviceFactory,
    LinkedUserFactory,
)

pytestmark = pytest.mark.django_db

PAGE_QUERIES = 12
"""Session, person, authenticator, membership, then the page's own reads (at most 7)."""


def url(name: str, membership: Membership, *args: str) -> str:
    return reverse(f"console:{name}", args=[membership.app.app_id, *args])


def page(client: Client, path: str, **params: str) -> str:
    response = client.get(path, params)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def console_events(action: AuditAction) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, actor_type=ActorType.CONSOLE))


# --------------------------------------------------------------------------- API keys


def test_keys_list_live_and_history(member, django_assert_max_num_queries) -> None:
    client, membership = member(Role.VIEWER)
    now = timezone.now()
    live = ApiKeyFactory(app=membership.app, name="backend prod")
    revoked = ApiKeyFactory(app=membership.app, revoked_at=now)
    expired = ApiKeyFactory(app=membership.app, expires_at=now - dt.timedelta(days=1))
    stranger = ApiKeyFactory()
    for _ in range(5):
        ApiKeyFactory(app=membership.app, revoked_at=now)
    with django_assert_max_num_queries(PAGE_QUERIES):
        html = page(client, url("keys", membership))
    live_part, history_part = html.split("History")
    assert live.key_id in live_part and "backend prod" in live_part and "active" in live_part
    assert revoked.key_id in history_part and expired.key_id in history_part
    assert stranger.key_id not in html
    assert "Create a key" not in html  # a viewer


def test_create_shows_the_key_once_and_it_works(member, api) -> None:
    client, membership = member(Role.DEVELOPER)
    form = client.get(url("key_create", membership)).context["form_nonce"]
    response = client.post(
        url("key_create", membership),
        {"name": "backend", "scopes": ["user.link"], "expires_in_days": 90, "form_nonce": form},
    )
    assert response.status_code == 200
    full_key = response.context["full_key"]
    html = response.content.decode()
    assert full_key in html and "Never ship this key in an app" in html
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(app=membership.app)
    assert (key.name, key.scopes) == ("backend", ["user.link"])
    assert dt.timedelta(days=89) < key.expires_at - timezone.now() <= dt.timedelta(days=90)
    created = console_events(AuditAction.KEY_CREATED)
    assert [event.actor for event in created] == [membership.user.email]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {full_key}")
    assert api.post("/users/auth-code", {"external_id": "x"}, format="json").status_code == 200
    # the same form sent again creates nothing and never shows the key again
    again = client.post(
        url("key_create", membership),
        {"name": "backend", "scopes": ["user.link"], "expires_in_days": 90, "form_nonce": form},
    )
    assert again.status_code == 302 and ApiKey.objects.count() == 1
    assert full_key not in page(client, url("keys", membership))


@pytest.mark.parametrize("days", [29, 366])
def test_expiry_must_be_30_to_365_days(member, days) -> None:
    client, membership = member(Role.DEVELOPER)
    nonce = client.get(url("key_create", membership)).context["form_nonce"]
    response = client.post(
        url("key_create", membership),
        {"name": "k", "scopes": ["user.link"], "expires_in_days": days, "form_nonce": nonce},
    )
    assert response.status_code == 200 and "full_key" not in response.context
    assert not ApiKey.objects.exists()


def test_the_cap_is_refused_with_a_clear_message(member, settings) -> None:
    settings.MAX_ACTIVE_API_KEYS_PER_APP = 2
    client, membership = member(Role.DEVELOPER)
    ApiKeyFactory.create_batch(2, app=membership.app)
    html = page(client, url("key_create", membership))
    assert "already has 2 active keys, the most it may have (2)" in html
    assert "Revoke one before creating another" in page(client, url("keys", membership))
    nonce = client.get(url("keys", membership)) and None  # no form shown: post anyway
    response = client.post(
        url("key_create", membership),
        {"name": "k", "scopes": ["user.link"], "expires_in_days": 60, "form_nonce": nonce or ""},
    )
    assert ApiKey.objects.filter(app=membership.app).count() == 2
    assert response.status_code in (200, 302)


def test_rotate_with_grace_then_revoke(member, api) -> None:
    client, membership = member(Role.DEVELOPER)
    key = ApiKeyFactory(app=membership.app)
    nonce = client.get(url("key_rotate", membership, key.key_id)).context["form_nonce"]
    response = client.post(
        url("key_rotate", membership, key.key_id), {"grace_hours": 2, "form_nonce": nonce}
    )
    assert response.status_code == 200
    new_key = response.context["full_key"]
    key.refresh_from_db()
    assert dt.timedelta(hours=1) < key.expires_at - timezone.now() <= dt.timedelta(hours=2)
    assert [e.actor for e in console_events(AuditAction.KEY_ROTATED)] == [membership.user.email]

    successor = ApiKey.objects.get(rotated_from=key)
    confirm = page(client, url("key_revoke", membership, successor.key_id))
    assert "API_KEY_REVOKED" in confirm
    assert successor.revoked_at is None  # a GET changes nothing
    response = client.post(url("key_revoke", membership, successor.key_id))
    assert response.status_code == 302
    successor.refresh_from_db()
    assert successor.revoked_at is not None
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {new_key}")
    answer = api.post("/users/auth-code", {"external_id": "x"}, format="json")
    assert answer.json()["errorCode"] == "API_KEY_REVOKED"


@pytest.mark.parametrize("hours", [-1, 169])
def test_grace_is_0_to_168_hours(member, hours) -> None:
    client, membership = member(Role.DEVELOPER)
    key = ApiKeyFactory(app=membership.app)
    nonce = client.get(url("key_rotate", membership, key.key_id)).context["form_nonce"]
    client.post(
        url("key_rotate", membership, key.key_id), {"grace_hours": hours, "form_nonce": nonce}
    )
    assert not ApiKey.objects.filter(rotated_from=key).exists()


def test_another_apps_key_is_not_found(member) -> None:
    client, membership = member(Role.DEVELOPER)
    other = ApiKeyFactory()
    for name in ("key_rotate", "key_revoke"):
        assert client.get(url(name, membership, other.key_id)).status_code == 404
        assert client.post(url(name, membership, other.key_id)).status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None


# --------------------------------------------------------------------------- users


def test_search_by_external_id_exact_or_prefix_or_user_id(
    member, django_assert_max_num_queries
) -> None:
    client, membership = member(Role.VIEWER)
    alice = LinkedUserFactory(app=membership.app, external_id="alice")
    alice2 = LinkedUserFactory(app=membership.app, external_id="alice-2")
    upper = LinkedUserFactory(app=membership.app, external_id="Alice")
    stranger = LinkedUserFactory(external_id="alice-3")
    for i in range(60):
        LinkedUserFactory(app=membership.app, external_id=f"bob-{i:02}")

    def results(term: str) -> list[LinkedUser]:
        with django_assert_max_num_queries(PAGE_QUERIES):
            return client.get(url("users", membership), {"q": term}).context["users"]

    assert results("alice") == [alice, alice2]
    assert results("Alice") == [upper]
    assert results(alice2.user_id.upper()) == [alice2]
    assert results("alice-3") == [] and stranger not in results("alice")
    assert results("lice") == []
    response = client.get(url("users", membership), {"q": "bob-"})
    assert len(response.context["users"]) == 50 and response.context["more"]


def test_a_users_page(member, django_assert_max_num_queries) -> None:
    client, membership = member(Role.VIEWER)
    user = LinkedUserFactory(app=membership.app, status=UserStatus.ACTIVE)
    phone = DeviceFactory(user=user, app=membership.app, is_active=True, inactive_reason=None)
    old = DeviceFactory(
        user=user,
        app=membership.app,
        is_active=False,
        inactive_reason=InactiveReason.REPLACED_BY_NEWER_DEVICE,
    )
    code = AuthCodeFactory(user=user, status=AuthCodeStatus.REDEEMED)
    for _ in range(30):
        AuthCodeFactory(user=user)
    services.set_user_disabled(
        user=user, disabled=True, actor=services_actor("support@example.com"), reason="ticket 7"
    )
    with django_assert_max_num_queries(PAGE_QUERIES):
        html = page(client, url("user_detail", membership, user.user_id))
    assert "DISABLED" in html and "ticket 7" in html
    assert html.index(phone.install_id) < html.index(old.install_id)
    assert "Active (user disabled)" in html and "Replaced by a newer device" in html
    assert code.code not in html and code.code_digest not in html
    assert "user.disabled" in html


def services_actor(email: str):
    from accounts.audit import Actor

    return Actor.console(email)


def test_disable_enable_with_reason(member) -> None:
    client, membership = member(Role.DEVELOPER)
    user = LinkedUserFactory(app=membership.app)
    client.post(url("user_disable", membership, user.user_id), {"reason": "fraud check"})
    user.refresh_from_db()
    assert user.is_disabled
    event = console_events(AuditAction.USER_DISABLED)[0]
    assert (event.actor, event.details) == (membership.user.email, {"note": "fraud check"})
    client.post(url("user_enable", membership, user.user_id))
    user.refresh_from_db()
    assert not user.is_disabled
    assert console_events(AuditAction.USER_ENABLED)


def test_delete_asks_for_the_external_id_then_shows_the_request(member) -> None:
    client, membership = member(Role.DEVELOPER)
    user = LinkedUserFactory(app=membership.app, external_id="carol")
    response = client.post(url("user_delete", membership, user.user_id), {"external_id": "caro"})
    assert response.status_code == 200 and "not the user" in response.content.decode()
    user.refresh_from_db()
    assert user.status != UserStatus.DELETED
    response = client.post(url("user_delete", membership, user.user_id), {"external_id": "carol"})
    deletion = DeletionRequest.objects.get(deleted_user_id=user.user_id)
    assert response.url == url("deletion", membership, deletion.request_id)
    html = page(client, response.url)
    assert deletion.request_id in html and "pending" in html
    assert console_events(AuditAction.USER_DELETED)[0].actor == membership.user.email
    services.purge_deleted_user(request_id=deletion.request_id)
    assert "completed" in page(client, response.url)
    # the purged user's page leads to its deletion
    gone = client.get(url("user_detail", membership, user.user_id))
    assert gone.url == url("deletion", membership, deletion.request_id)


def test_another_apps_user_is_not_found(member) -> None:
    client, membership = member(Role.DEVELOPER)
    other = LinkedUserFactory()
    for name in ("user_detail", "user_disable", "user_enable", "user_delete"):
        assert client.post(url(name, membership, other.user_id)).status_code == 404
    assert client.get(url("user_detail", membership, other.user_id)).status_code == 404
    other.refresh_from_db()
    assert not other.is_disabled and other.status != UserStatus.DELETED


# --------------------------------------------------------------------------- SDK configuration


def test_config_diff_then_save_with_before_and_after(member) -> None:
    client, membership = member(Role.DEVELOPER)
    before = membership.app.sdk_config
    start = client.get(url("config", membership))
    base = start.context["form"]["base"].value()
    new = {**before, "tracking": {"interval_s": 60}}
    preview = client.post(
        url("config", membership), {"config": json.dumps(new), "base": base, "preview": "1"}
    )
    html = unescape(preview.content.decode())
    assert '-    "interval_s": 30' in html and '+    "interval_s": 60' in html
    membership.app.refresh_from_db()
    assert membership.app.sdk_config == before  # a preview saves nothing
    saved = client.post(
        url("config", membership), {"config": json.dumps(new), "base": base, "save": "1"}
    )
    assert saved.status_code == 302
    membership.app.refresh_from_db()
    assert membership.app.sdk_config == new
    event = console_events(AuditAction.APP_UPDATED)[0]
    assert event.details == {"fields": ["sdk_config"], "before": before, "after": new}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "Must be a JSON object"),
        ("{nope", "Not valid JSON"),
        (json.dumps({"blob": "x" * 16_400}), "must be at most 16 KB"),
    ],
)
def test_config_must_be_an_object_of_at_most_16_kb(member, text, message) -> None:
    client, membership = member(Role.DEVELOPER)
    before = membership.app.sdk_config
    base = client.get(url("config", membership)).context["form"]["base"].value()
    response = client.post(url("config", membership), {"config": text, "base": base, "save": "1"})
    assert message in response.content.decode()
    membership.app.refresh_from_db()
    assert membership.app.sdk_config == before
    assert not AuditEvent.objects.filter(action=AuditAction.APP_UPDATED).exists()


def test_a_preview_of_a_config_changed_meanwhile_is_not_saved(member) -> None:
    client, membership = member(Role.DEVELOPER)
    base = client.get(url("config", membership)).context["form"]["base"].value()
    services.set_sdk_config(app=membership.app, config={"other": 1}, actor=services_actor("x@y.z"))
    client.post(url("config", membership), {"config": '{"mine": 1}', "base": base, "save": "1"})
    membership.app.refresh_from_db()
    assert membership.app.sdk_config == {"other": 1}


def test_a_viewer_reads_the_config_and_cannot_post(member) -> None:
    client, membership = member(Role.VIEWER)
    html = page(client, url("config", membership))
    assert "interval_s" in html and "<textarea" not in html
    response = client.post(url("config", membership), {"config": "{}", "save": "1"})
    assert response.status_code == 403


# --------------------------------------------------------------------------- audit log


def test_audit_log_filters_and_keyset_pages(member, django_assert_max_num_queries) -> None:
    client, membership = member(Role.VIEWER)
    app = membership.app
    start = timezone.now() - dt.timedelta(days=3)
    for i in range(120):
        AuditEvent.objects.create(
            app=app,
            occurred_at=start + dt.timedelta(minutes=i // 2),  # pairs share a time
            actor_type=ActorType.API_KEY if i % 3 else ActorType.CONSOLE,
            actor="k1" if i % 3 else "dev@customer.example",
            action=AuditAction.USER_DISABLED if i % 3 else AuditAction.KEY_CREATED,
            target_type="user",
            target_id=f"t{i}",
        )
    AuditEvent.objects.create(
        app=AppFactory(),
        actor_type=ActorType.STAFF,
        action="user.enabled",
        target_type="user",
        target_id="stranger",
    )
    seen: list[str] = []
    query = {}
    while True:
        with django_assert_max_num_queries(PAGE_QUERIES):
            response = client.get(url("audit", membership), query)
        seen += [event.target_id for event in response.context["events"]]
        if not response.context["older"]:
            break
        query = dict(pair.split("=", 1) for pair in response.context["older"].split("&"))
        query = {
            k: v.replace("%3A", ":").replace("%2B", "+").replace("%7E", "~")
            for k, v in query.items()
        }
    assert seen == [f"t{i}" for i in range(119, -1, -1)]
    keys = client.get(url("audit", membership), {"action": "key.created"}).context["events"]
    assert {e.action for e in keys} == {"key.created"} and len(keys) == 40
    by_actor = client.get(url("audit", membership), {"actor": "k1"}).context["events"]
    assert len(by_actor) == 50 and {e.actor for e in by_actor} == {"k1"}
    day = (start + dt.timedelta(minutes=30)).date().isoformat()
    dated = client.get(url("audit", membership), {"since": day, "until": day}).context["events"]
    assert all(e.occurred_at.date().isoformat() == day for e in dated)
    assert "stranger" not in page(client, url("audit", membership))


def test_audit_log_refuses_a_bad_cursor(member) -> None:
    client, membership = member(Role.VIEWER)
    response = client.get(url("audit", membership), {"before": "yesterday"})
    assert response.status_code == 200 and response.context["events"] == []


# --------------------------------------------------------------------------- overview


def test_overview(member, django_assert_max_num_queries) -> None:
    client, membership = member(Role.VIEWER)
    app = membership.app
    now = timezone.now()
    user = LinkedUserFactory(app=app)
    for back in (0, 0, 1, 40):  # the 40-days-old code is outside the chart
        created = now - dt.timedelta(days=back)
        AuthCodeFactory(
            user=user, created_at=created, expires_at=created + dt.timedelta(minutes=10)
        )
    AuthCodeFactory(user=user, status=AuthCodeStatus.REDEEMED, redeemed_at=now, created_at=now)
    AuthCodeFactory()  # another app's
    DeviceFactory(
        user=user,
        app=app,
        is_active=True,
        inactive_reason=None,
        platform="ios",
        form_factor="tablet",
    )
    soon = ApiKeyFactory(app=app, expires_at=now + dt.timedelta(days=3))
    ApiKeyFactory(app=app, expires_at=now + dt.timedelta(days=30))
    with django_assert_max_num_queries(PAGE_QUERIES):
        response = client.get(url("overview", membership))
    html = response.content.decode()
    totals = response.context["totals"]
    assert (totals["codes_issued"], totals["codes_redeemed"]) == (4, 1)
    assert response.context["rate"] == "25.0%"
    assert response.context["devices_total"] == 1
    assert [key for key, _ in response.context["expiring"]] == [soon]
    assert url("key_rotate", membership, soon.key_id) in html
    assert "<svg" in html


# --------------------------------------------------------------------------- query counts


def grow(membership: Membership, times: int, tag: str) -> None:
    """`times` more of everything the pages read, in the member's app."""
    app = membership.app
    now = timezone.now()
    for i in range(times):
        ApiKeyFactory(app=app, revoked_at=now if i % 2 else None)
        user = LinkedUserFactory(app=app, external_id=f"many-{tag}-{i}")
        DeviceFactory(user=user, app=app, is_active=True, inactive_reason=None)
        AuthCodeFactory(user=user)
        AuditEvent.objects.create(
            app=app, actor_type=ActorType.DEVICE, action="user.created", target_type="user"
        )


@pytest.mark.parametrize(
    ("name", "args", "query"),
    [
        ("overview", [], {}),
        ("keys", [], {}),
        ("key_create", [], {}),
        ("key_rotate", ["key"], {}),
        ("key_revoke", ["key"], {}),
        ("users", [], {"q": "many-"}),
        ("user_detail", ["user"], {}),
        ("user_delete", ["user"], {}),
        ("deletion", ["deletion"], {}),
        ("config", [], {}),
        ("audit", [], {}),
        ("audit", [], {"action": "user.created", "actor": "x", "since": "2026-01-01"}),
    ],
)
def test_query_count_does_not_grow_with_the_data(member, settings, name, args, query) -> None:
    settings.MAX_ACTIVE_API_KEYS_PER_APP = 1000
    client, membership = member(Role.OWNER)
    user = LinkedUserFactory(app=membership.app, external_id="many-user")
    objects = {
        "key": ApiKeyFactory(app=membership.app).key_id,
        "user": user.user_id,
        "deletion": DeletionRequestFactory(app=membership.app).request_id,
    }
    path = url(name, membership, *(objects[arg] for arg in args))
    counts = []
    for times in (1, 25):
        grow(membership, times, tag=str(times))
        for _ in range(3):
            AuthCodeFactory(user=user)
            DeviceFactory(user=user, app=membership.app)
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path, query).status_code == 200
        counts.append(len(captured))
    assert counts[0] == counts[1] <= PAGE_QUERIES, counts


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "index"),
    [
        ({}, "audit_app_recent"),
        ({"action": "key.created"}, "audit_app_action"),
        ({"action": "user.created"}, "audit_app_recent"),  # a device's: the app's log at once
        ({"actor": "dev@customer.example"}, "audit_app_actor"),
        ({"before": "2026-11-30T10:00:00+00:00~5"}, "audit_app_recent"),
    ],
)
def test_audit_pages_are_ranges_of_an_app_index(member, query, index) -> None:
    """No OFFSET, no COUNT, and an index that starts with the app for every filter (the
    filtered ones leave out the devices' own events, so the query must too)."""
    client, membership = member(Role.VIEWER)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url("audit", membership), query).status_code == 200
    [read] = [q["sql"] for q in captured if 'FROM "accounts_auditevent"' in q["sql"]]
    assert "OFFSET" not in read and "COUNT(" not in read
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {read}")
        explained = "\n".join(row[0] for row in cursor.fetchall())
    assert index in explained, explained
