"""The admin index's dashboard: codes per hour over 24 hours as an inline SVG chart, active
devices by platform and form factor, keys expiring within 14 days."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.dashboard import code_activity, keys_expiring_soon
from accounts.models import AuthCode
from devices.dashboard import active_devices_by_kind
from tests.admin.conftest import World, logged_in
from tests.factories import ApiKeyFactory, AuthCodeFactory, DeviceFactory

NOW = dt.datetime(2026, 11, 29, 10, 30, tzinfo=dt.UTC)


def code(created: dt.datetime, **fields: object) -> AuthCode:
    return AuthCodeFactory(
        created_at=created, expires_at=created + dt.timedelta(minutes=10), **fields
    )


def test_codes_per_hour(db: None) -> None:
    hour = dt.timedelta(hours=1)
    code(NOW - 3 * hour)  # issued, then expired unredeemed in the same hour
    code(NOW - hour, status="redeemed", redeemed_at=NOW - hour + dt.timedelta(minutes=2))
    code(NOW - hour, status="void")  # its user was deleted: not "expired"
    code(NOW - dt.timedelta(minutes=5))  # still valid
    code(NOW - 30 * hour)  # outside the window

    activity = code_activity(now=NOW)

    assert len(activity.hours) == 24
    assert activity.hours[-1] == NOW.replace(minute=0)
    assert activity.hours[0] == NOW.replace(minute=0) - 23 * hour
    assert sum(activity.issued) == 4
    assert activity.issued[-4] == 1
    assert activity.issued[-2] == 2
    assert activity.issued[-1] == 1
    assert activity.redeemed[-2] == 1
    assert sum(activity.redeemed) == 1
    assert activity.expired[-4] == 1
    assert sum(activity.expired) == 1


def test_active_devices_by_kind(db: None) -> None:
    DeviceFactory(is_active=True, inactive_reason=None)
    DeviceFactory(is_active=True, inactive_reason=None, platform="ios", form_factor="tablet")
    DeviceFactory()  # inactive
    assert active_devices_by_kind() == {
        ("android", "phone"): 1,
        ("android", "tablet"): 0,
        ("ios", "phone"): 0,
        ("ios", "tablet"): 1,
    }


def test_keys_expiring_within_14_days(db: None) -> None:
    soon = ApiKeyFactory(expires_at=NOW + dt.timedelta(days=3))
    sooner = ApiKeyFactory(expires_at=NOW + dt.timedelta(days=1))
    ApiKeyFactory(expires_at=NOW + dt.timedelta(days=20))
    ApiKeyFactory(expires_at=NOW + dt.timedelta(days=2), revoked_at=NOW)
    ApiKeyFactory(expires_at=NOW - dt.timedelta(days=1))
    assert keys_expiring_soon(now=NOW) == [sooner, soon]


def test_the_index_shows_the_dashboard(support: Client, world: World) -> None:
    now = timezone.now()
    code(now - dt.timedelta(minutes=1), user=world.user)
    expiring = ApiKeyFactory(app=world.app, name="old", expires_at=now + dt.timedelta(days=5))

    page = support.get(reverse("admin:index")).text

    dashboard = page[page.index('id="staff-dashboard"') :]
    svg = re.search(r"<svg viewBox.*?</svg>", dashboard, re.S).group(0)
    assert svg.count("<polyline") == 3
    assert 'id="total-issued">2<' in dashboard  # the world's code and this one
    assert 'id="total-redeemed">1<' in dashboard
    assert "<script" not in dashboard
    assert "http" not in svg
    assert "Active devices (1)" in dashboard
    assert expiring.key_id in dashboard
    assert world.key.key_id not in dashboard


def test_staff_see_the_parts_they_may_view(support_user, world: World) -> None:
    support_user.groups.clear()
    support_user.user_permissions.add(Permission.objects.get(codename="view_device"))
    page = logged_in(support_user).get(reverse("admin:index")).text
    assert 'id="dashboard-devices"' in page
    assert 'id="dashboard-codes"' not in page
    assert 'id="dashboard-keys"' not in page


@pytest.mark.postgres
def test_code_counts_are_bounded_by_the_expiry_index(db: None) -> None:
    """Every query reads an index range of the last 24 hours, never the whole table."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    with CaptureQueriesContext(connection) as captured:
        code_activity(now=NOW)
    with connection.cursor() as cursor:
        for query in captured:
            cursor.execute(f"EXPLAIN {query['sql']}")
            explained = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan" not in explained
            assert "authcode_expires_at" in explained or "authcode_issued_expiry" in explained
