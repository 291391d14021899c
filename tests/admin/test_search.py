"""Search finds by exact ids and by prefix, on the whole search text, case-sensitively (but
the portal's own lower-case hex ids in any case), with the same results on PostgreSQL and
SQLite, and only with lookups an index serves (on PostgreSQL the plans prove it)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Model
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts import services
from accounts.admin_base import when
from accounts.audit import Actor
from accounts.models import AuditEvent, DeletionRequest, LinkedUser
from devices.models import Device
from tests.admin.conftest import World, logged_in
from tests.factories import DeviceFactory, LinkedUserFactory


def found(client: Client, name: str, term: str) -> list:
    page = client.get(reverse(f"admin:{name}_changelist"), {"q": term})
    assert page.status_code == 200
    return list(page.context["cl"].result_list)


def test_users_by_user_id_or_external_id_prefix(support: Client, world: World) -> None:
    spaced = LinkedUserFactory(app=world.app, external_id="bob smith")
    assert found(support, "accounts_linkeduser", world.user.user_id) == [world.user]
    assert found(support, "accounts_linkeduser", "alice@example.com") == [world.user]
    assert found(support, "accounts_linkeduser", "alice@") == [world.user]
    assert found(support, "accounts_linkeduser", "  bob smith ") == [spaced]
    assert found(support, "accounts_linkeduser", "example.com") == []
    assert found(support, "accounts_linkeduser", world.user.user_id[:10]) == []


def test_external_ids_match_in_their_exact_case_on_every_database(
    support: Client, world: World
) -> None:
    upper = LinkedUserFactory(app=world.app, external_id="Alice")
    lower = LinkedUserFactory(app=world.app, external_id="alice")
    assert found(support, "accounts_linkeduser", "Alice@example.com") == []
    assert found(support, "accounts_linkeduser", "Alice") == [upper]
    assert set(found(support, "accounts_linkeduser", "alice")) == {lower, world.user}
    assert found(support, "accounts_linkeduser", "ALICE") == []


def test_pattern_characters_in_a_prefix_are_plain_characters(support: Client, world: World) -> None:
    starred = LinkedUserFactory(app=world.app, external_id="a*b?c[d]_e%f")
    LinkedUserFactory(app=world.app, external_id="aXbYcdZeGf")
    for prefix in ["a*", "a*b?", "a*b?c[", "a*b?c[d]", "a*b?c[d]_e%"]:
        assert found(support, "accounts_linkeduser", prefix) == [starred], prefix
    assert found(support, "accounts_linkeduser", "a?") == []


def test_a_user_id_in_upper_case_is_found(support: Client, world: World) -> None:
    user_id = world.user.user_id.upper()
    assert found(support, "accounts_linkeduser", user_id) == [world.user]
    assert found(support, "accounts_authcode", user_id) == [world.code]
    deleted = world.deletion.deleted_user_id.upper()
    assert found(support, "accounts_deletionrequest", deleted) == [world.deletion]
    request_id = world.deletion.request_id.upper()
    assert found(support, "accounts_deletionrequest", request_id) == [world.deletion]
    events = found(support, "accounts_auditevent", user_id)
    assert [event.action for event in events] == ["user.created"]


def test_the_portal_ids_of_keys_and_apps_are_found_in_any_case(
    support: Client, world: World
) -> None:
    assert found(support, "accounts_apikey", world.key.key_id[:6].upper()) == [world.key]
    assert found(support, "accounts_app", world.app.app_id.upper()) == [world.app]


def test_a_user_is_found_by_an_install_id_of_one_of_its_devices(
    support: Client, world: World
) -> None:
    other_app_device = DeviceFactory(install_id=world.phone.install_id)
    assert set(found(support, "accounts_linkeduser", world.phone.install_id)) == {
        world.user,
        other_app_device.user,
    }
    assert found(support, "accounts_linkeduser", world.tablet.install_id) == [world.user]
    assert found(support, "accounts_linkeduser", "phone-install") == [], "exact, not a prefix"
    assert found(support, "accounts_linkeduser", "PHONE-INSTALL-0001") == []


def test_devices_by_install_id_or_model_prefix(support: Client, world: World) -> None:
    assert found(support, "devices_device", "phone-install") == [world.phone]
    assert found(support, "devices_device", "iPad") == [world.tablet]
    assert found(support, "devices_device", "ipad") == []
    assert found(support, "devices_device", "Phone-install") == []
    assert found(support, "devices_device", "install") == []


def test_audit_events_by_user_or_target(support: Client, world: World) -> None:
    events = found(support, "accounts_auditevent", world.user.user_id)
    assert [event.action for event in events] == ["user.created"]
    assert found(support, "accounts_auditevent", world.key.key_id) == []


def deleted_and_purged(external_id: str, world: World) -> DeletionRequest:
    user = LinkedUserFactory(app=world.app, external_id=external_id, status="active")
    deletion = services.request_user_deletion(user=user, actor=Actor.api_key(world.key.key_id))
    assert services.purge_deleted_user(request_id=deletion.request_id)
    assert not LinkedUser.objects.filter(user_id=deletion.deleted_user_id).exists()
    deletion.refresh_from_db()
    return deletion


def test_a_purged_users_deletion_is_found_by_its_external_id(support: Client, world: World) -> None:
    """Support can answer "was bob deleted, and when?": the request keeps a keyed digest of
    the external id, never the id itself, and the search goes through the same digest."""
    deletion = deleted_and_purged("bob@example.com", world)
    assert found(support, "accounts_deletionrequest", " bob@example.com ") == [deletion]
    assert found(support, "accounts_deletionrequest", deletion.deleted_user_id) == [deletion]
    for other in ["Bob@example.com", "bob@example", "bob@example.com.", world.user.external_id]:
        assert found(support, "accounts_deletionrequest", other) == [], other

    page = support.get(
        reverse("admin:accounts_deletionrequest_changelist"), {"q": "bob@example.com"}
    ).text
    row = page.split(deletion.request_id, 1)[1].split("</tr>", 1)[0]
    assert when(deletion.requested_at) in row
    assert when(deletion.completed_at) in row

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_deletionrequest WHERE id = %s", [deletion.pk])
        [raw] = cursor.fetchall()
    assert deletion.external_id_digest in raw
    assert not [value for value in raw if "bob" in str(value).lower()], raw


def test_external_ids_stay_findable_while_the_former_secret_key_is_a_fallback(
    support_user: User, world: World
) -> None:
    deletion = deleted_and_purged("carol", world)
    rotated = {"SECRET_KEY": "a-new-secret-key"}
    with override_settings(**rotated, SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert found(logged_in(support_user), "accounts_deletionrequest", "carol") == [deletion]
    with override_settings(**rotated, SECRET_KEY_FALLBACKS=[]):
        assert found(logged_in(support_user), "accounts_deletionrequest", "carol") == []


def test_filters_and_searches_combine(support: Client, world: World) -> None:
    url = reverse("admin:accounts_linkeduser_changelist")
    page = support.get(url, {"q": "alice", "active_device": "yes", "status": "active"})
    assert list(page.context["cl"].result_list) == [world.user]
    assert support.get(url, {"active_device": "no"}).context["cl"].result_count == 0


def test_search_sql_is_exact_or_a_case_sensitive_prefix_never_upper_or_contains(
    support: Client, world: World
) -> None:
    with CaptureQueriesContext(connection) as captured:
        found(support, "accounts_linkeduser", "alice")
    [search] = [
        q["sql"]
        for q in captured
        if "accounts_linkeduser" in q["sql"] and "LIMIT" in q["sql"] and "COUNT" not in q["sql"]
    ]
    # SQLite's LIKE ignores case: there the prefix is a GLOB (case-sensitive, indexed too).
    assert ("GLOB" if connection.vendor == "sqlite" else "LIKE") in search
    assert "UPPER(" not in search and "LOWER(" not in search
    assert "'%alice" not in search


def plan(model: type[Model], term: str) -> str:
    """The plan of the admin's search filter alone, with sequential scans priced out: a
    predicate no index can serve still shows up as a Seq Scan."""
    model_admin = admin.site.get_model_admin(model)
    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True)
    queryset, _ = model_admin.get_search_results(request, model.objects.all(), term)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.order_by().explain()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("model", "indexes"),
    [
        (
            LinkedUser,
            [
                "on accounts_linkeduser_user_id",
                "linkeduser_external_id_like",
                "device_install_id_like",
                "accounts_linkeduser_pkey",
            ],
        ),
        (Device, ["device_install_id_like", "device_model_like"]),
        (AuditEvent, ["audit_user_timeline", "audit_target"]),
        (
            DeletionRequest,
            [
                "accounts_deletionrequest_request_id",
                "accounts_deletionrequest_deleted_user_id",
                "deletion_external_id",
            ],
        ),
    ],
)
def test_searches_are_served_by_indexes(
    model: type[Model], indexes: list[str], world: World
) -> None:
    explained = plan(model, "abc")
    assert "Seq Scan" not in explained, explained
    for index in indexes:
        assert index in explained, explained
