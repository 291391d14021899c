"""What keeps the lists fast at a million rows, found with `bench/admin_pages.py`: a capped
count that reads any matching rows rather than the list's order, indexes for the audit
filters, and the app indexes without the dashboard's queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.admin.conftest import World


def captured_sql(client: Client, url: str, params: dict | None = None) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params or {}).status_code == 200
    return [query["sql"] for query in captured]


def test_the_capped_count_has_neither_order_nor_annotations(support: Client, world: World) -> None:
    """Ordered by id, a count of the matches of a prefix that only old users have reads the
    whole id index; the count needs any 1001 of them, and no per-row EXISTS."""
    url = reverse("admin:accounts_linkeduser_changelist")
    [count] = [sql for sql in captured_sql(support, url, {"q": "alice"}) if "COUNT(" in sql]
    assert "ORDER BY" not in count
    assert "EXISTS" not in count
    assert "LIMIT 1001" in count


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("parameter", "value", "index"),
    [
        ("action__exact", "key.rotated", "audit_action_recent"),
        ("actor_type__exact", "operator", "audit_actor_recent"),
    ],
)
def test_audit_filters_are_served_by_indexes(
    support: Client, world: World, parameter: str, value: str, index: str
) -> None:
    """Without these indexes a rare action is looked for through every event, newest first."""
    url = reverse("admin:accounts_auditevent_changelist")
    reads = [
        sql
        for sql in captured_sql(support, url, {parameter: value})
        if '"accounts_auditevent"' in sql and f"= '{value}'" in sql
    ]
    assert reads
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in reads:
            cursor.execute(f"EXPLAIN {sql}")
            explained = "\n".join(row[0] for row in cursor.fetchall())
            assert index in explained, explained


def test_app_indexes_list_models_without_the_dashboard(support: Client, world: World) -> None:
    for app_label, a_list in [("accounts", "accounts_app"), ("devices", "devices_device")]:
        url = reverse("admin:app_list", args=[app_label])
        page = support.get(url).text
        assert reverse(f"admin:{a_list}_changelist") in page
        assert 'id="staff-dashboard"' not in page
        assert not [sql for sql in captured_sql(support, url) if "accounts_authcode" in sql]
    assert 'id="staff-dashboard"' in support.get(reverse("admin:index")).text
