"""What the lists show support: the app by name (its id in the tooltip), the decisive columns
first, one way to write a time (UTC, and saying so) on every page, platforms and scopes as
the API spells them, and sorting only by the dates an index keeps in order."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import DateTimeField, Model
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.admin_base import StaffAdmin, when
from accounts.models import ApiKey, AuditEvent, AuthCode
from tests.admin.conftest import World
from tests.admin.pages import add_key_page, viewing_pages
from tests.factories import ApiKeyFactory, DeviceFactory

LISTS_WITH_AN_APP_COLUMN = [
    "accounts_apikey",
    "accounts_linkeduser",
    "accounts_authcode",
    "accounts_deletionrequest",
    "accounts_auditevent",
    "devices_device",
]


def changelist(client: Client, name: str, params: dict | None = None) -> str:
    response = client.get(reverse(f"admin:{name}_changelist"), params or {})
    assert response.status_code == 200
    return response.text


def rows(page: str) -> str:
    return page.split('<table id="result_list">', 1)[1].split("<tbody>", 1)[1].split("</tbody>")[0]


def headers(page: str) -> list[str]:
    head = page.split('<table id="result_list">', 1)[1].split("</thead>", 1)[0]
    texts = re.findall(r'<div class="text">(?:<a [^>]*>|<span>)([^<]*)<', head)
    return [text.strip().lower() for text in texts if text.strip()]


@pytest.mark.parametrize("name", LISTS_WITH_AN_APP_COLUMN)
def test_lists_name_the_app_with_its_id_in_the_tooltip(
    name: str, support: Client, world: World
) -> None:
    app = world.app
    shown = rows(changelist(support, name))
    assert f'title="{app.name} ({app.app_id})">{app.name}</span>' in shown
    assert f"{app.name} ({app.app_id})<" not in shown


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("accounts_linkeduser", ["user id", "external id", "status", "active device"]),
        ("devices_device", ["install id", "kind", "state", "last seen at"]),
        ("accounts_apikey", ["key id", "status", "expires at", "last used at"]),
        ("accounts_authcode", ["id", "status"]),
    ],
)
def test_the_decisive_columns_come_first(
    name: str, first: list[str], support: Client, world: World
) -> None:
    assert headers(changelist(support, name))[: len(first)] == first


def test_a_long_value_is_cut_in_the_list_and_whole_in_its_tooltip(
    support: Client, world: World
) -> None:
    external_id = "a-very-long-external-id-" + "x" * 200
    world.user.external_id = external_id
    world.user.save(update_fields=["external_id"])
    shown = rows(changelist(support, "accounts_linkeduser"))
    assert f'<span class="clip wide" title="{external_id}">{external_id}</span>' in shown


UNLABELLED_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?(?! UTC)")
DJANGOS_OWN_FORMAT = re.compile(r"\b(a\.m\.|p\.m\.|midnight|noon)")


def test_every_page_writes_times_one_way_in_utc(support: Client, world: World) -> None:
    for url in viewing_pages(world):
        page = support.get(url).text
        assert not UNLABELLED_TIME.findall(page), url
        assert not DJANGOS_OWN_FORMAT.findall(page), url

    created = f"{world.user.created_at:%Y-%m-%d %H:%M} UTC"
    assert created == when(world.user.created_at)
    user_page = reverse("admin:accounts_linkeduser_change", args=[world.user.pk])
    assert created in support.get(user_page).text, "a detail page"
    assert created in rows(changelist(support, "accounts_linkeduser")), "a list"
    assert when(world.key.expires_at) in rows(changelist(support, "accounts_apikey"))
    event = AuditEvent.objects.get(user_ref=world.user.user_id)
    assert when(event.occurred_at) in support.get(user_page).text.split('id="user-timeline"')[1]


def test_platforms_and_scopes_are_spelled_as_the_api_spells_them(
    support: Client, key_admin: Client, world: World
) -> None:
    DeviceFactory(user=world.user, platform="ios", form_factor="tablet")
    devices = rows(changelist(support, "devices_device"))
    assert "iOS tablet" in devices
    assert "Android phone" in devices
    device_page = reverse("admin:devices_device_change", args=[world.phone.pk])
    assert '<div class="readonly">Android</div>' in support.get(device_page).text
    user_page = reverse("admin:accounts_linkeduser_change", args=[world.user.pk])
    assert "iOS tablet" in support.get(user_page).text
    assert "<td>iOS</td>" in support.get(reverse("admin:index")).text

    assert "user.link, user.read, user.delete" in rows(changelist(support, "accounts_apikey"))
    add_form = key_admin.get(add_key_page()).text
    assert re.search(r'value="user\.link"[^>]*>\s*user\.link</label>', add_form)
    for url in [*viewing_pages(world), add_key_page()]:
        page = key_admin.get(url).text
        assert "User Link" not in page and ">Ios<" not in page, url


def indexed_date_columns(model: type[Model]) -> set[str]:
    """The date columns that an index of the model keeps in order over the whole table (a
    partial index orders only its part)."""
    ordered = {field.name for field in model._meta.fields if field.db_index or field.unique}
    ordered |= {
        index.fields[0].lstrip("-") for index in model._meta.indexes if index.condition is None
    }
    return {name for name in ordered if isinstance(model._meta.get_field(name), DateTimeField)}


def test_lists_sort_only_by_dates_an_index_keeps_in_order(world: World) -> None:
    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True)
    sortable = {
        model: set(model_admin.get_sortable_by(request))
        for model, model_admin in admin.site._registry.items()
        if isinstance(model_admin, StaffAdmin)
    }
    for model, columns in sortable.items():
        assert columns <= indexed_date_columns(model), model
    assert {model: columns for model, columns in sortable.items() if columns} == {
        ApiKey: {"expires_at"},
        AuthCode: {"expires_at"},
        AuditEvent: {"occurred_at"},
    }


def sorted_by(client: Client, name: str, column: str) -> tuple[str, list]:
    """The list sorted by the header link of `column`, as staff click it."""
    page = changelist(client, name)
    head = page.split('<table id="result_list">', 1)[1].split("</thead>", 1)[0]
    [query] = re.findall(rf'<div class="text"><a href="\?(o=[^"]*)">{column}</a>', head)
    response = client.get(reverse(f"admin:{name}_changelist") + "?" + query)
    return query, list(response.context["cl"].result_list)


def test_the_key_list_sorts_by_expiry(support: Client, world: World) -> None:
    for days in (3, 400, 30):
        ApiKeyFactory(app=world.app, expires_at=timezone.now() + dt.timedelta(days=days))
    _, keys = sorted_by(support, "accounts_apikey", "Expires at")
    assert len(keys) == 4
    assert [key.expires_at for key in keys] == sorted(key.expires_at for key in keys)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("name", "column", "index"),
    [
        ("accounts_apikey", "Expires at", "apikey_expires_at"),
        ("accounts_authcode", "Expires at", "authcode_expires_at"),
        ("accounts_auditevent", "Occurred at", "audit_recent"),
    ],
)
def test_a_sorted_list_reads_its_index_in_order(
    name: str, column: str, index: str, support: Client, world: World
) -> None:
    query, _ = sorted_by(support, name, column)
    with CaptureQueriesContext(connection) as captured:
        support.get(reverse(f"admin:{name}_changelist") + "?" + query)
    [listed] = [
        sql
        for sql in (q["sql"] for q in captured)
        if f'FROM "{name}"' in sql and "ORDER BY" in sql and "COUNT(" not in sql
    ]
    with connection.cursor() as cursor:
        # Priced out: reading the table and sorting it, which is what a few test rows
        # would get; the index must be able to give the order (the tie on id aside).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {listed}")
        explained = "\n".join(row[0] for row in cursor.fetchall())
    assert index in explained, explained
