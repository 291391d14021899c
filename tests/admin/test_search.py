"""Search finds by exact ids and by prefix, on the whole search text, case-sensitively, and
only with lookups an index serves (on PostgreSQL the plans prove it)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Model
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import AuditEvent, LinkedUser
from devices.models import Device
from tests.admin.conftest import World
from tests.factories import LinkedUserFactory


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
    if connection.vendor == "postgresql":  # SQLite's LIKE ignores case
        assert found(support, "accounts_linkeduser", "Alice") == []
    assert found(support, "accounts_linkeduser", "example.com") == []
    assert found(support, "accounts_linkeduser", world.user.user_id[:10]) == []


def test_devices_by_install_id_or_model_prefix(support: Client, world: World) -> None:
    assert found(support, "devices_device", "phone-install") == [world.phone]
    assert found(support, "devices_device", "iPad") == [world.tablet]
    assert found(support, "devices_device", "install") == []


def test_audit_events_by_user_or_target(support: Client, world: World) -> None:
    events = found(support, "accounts_auditevent", world.user.user_id)
    assert [event.action for event in events] == ["user.created"]
    assert found(support, "accounts_auditevent", world.key.key_id) == []


def test_filters_and_searches_combine(support: Client, world: World) -> None:
    url = reverse("admin:accounts_linkeduser_changelist")
    page = support.get(url, {"q": "alice", "active_device": "yes", "status": "active"})
    assert list(page.context["cl"].result_list) == [world.user]
    assert support.get(url, {"active_device": "no"}).context["cl"].result_count == 0


def test_search_sql_is_exact_or_a_prefix_like_never_upper_or_contains(
    support: Client, world: World
) -> None:
    with CaptureQueriesContext(connection) as captured:
        found(support, "accounts_linkeduser", "alice")
    [search] = [
        q["sql"]
        for q in captured
        if "accounts_linkeduser" in q["sql"] and "LIMIT" in q["sql"] and "COUNT" not in q["sql"]
    ]
    assert "LIKE" in search
    assert "UPPER(" not in search
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
        (LinkedUser, ["on accounts_linkeduser_user_id", "linkeduser_external_id_like"]),
        (Device, ["device_install_id_like", "device_model_like"]),
        (AuditEvent, ["audit_user_timeline", "audit_target"]),
    ],
)
def test_searches_are_served_by_indexes(
    model: type[Model], indexes: list[str], world: World
) -> None:
    explained = plan(model, "abc")
    assert "Seq Scan" not in explained, explained
    for index in indexes:
        assert index in explained, explained
