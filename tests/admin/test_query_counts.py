"""Each page costs the same number of queries with 5 rows as with 50: no query per row, and
what grows with the data is only inside the bounded queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import audit, services
from accounts.audit import Actor
from accounts.models import AuditAction
from tests.admin.conftest import World
from tests.factories import (
    ApiKeyFactory,
    AppFactory,
    AuthCodeFactory,
    DeletionRequestFactory,
    DeviceFactory,
    LinkedUserFactory,
)


def queries(client: Client, url: str) -> int:
    """Queries of one rendering, after a first one has warmed the process-wide caches."""
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def user_event(user_id: str, n: int) -> None:
    audit.record(
        *[
            audit.event(
                actor=Actor.staff("support"),
                action=AuditAction.USER_DISABLED,
                target_type="user",
                target_id=user_id,
                app_id=None,
                user_ref=user_id,
            )
            for _ in range(n)
        ]
    )


def events(n: int) -> None:
    for _ in range(n):
        user = LinkedUserFactory()
        audit.record(
            audit.event(
                actor=Actor.device("x"),
                action=AuditAction.USER_CREATED,
                target_type="user",
                target_id=user.user_id,
                app_id=user.app_id,
                user_ref=user.user_id,
            )
        )


def devices(n: int) -> None:
    for i in range(n):
        DeviceFactory(is_active=i % 2 == 0, inactive_reason=None if i % 2 == 0 else "RESET")


def codes(n: int) -> None:
    for _ in range(n):
        key = ApiKeyFactory()
        AuthCodeFactory(user=LinkedUserFactory(app=key.app), api_key=key)


# Every row brings its own related rows (app, user, key), so a query per row would show.
CHANGELISTS: dict[str, Callable[[int], object]] = {
    "accounts_app": AppFactory.create_batch,
    "accounts_apikey": ApiKeyFactory.create_batch,
    "accounts_linkeduser": LinkedUserFactory.create_batch,
    "accounts_authcode": codes,
    "accounts_deletionrequest": DeletionRequestFactory.create_batch,
    "accounts_auditevent": events,
    "devices_device": devices,
}


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelist_queries_do_not_grow_with_rows(name: str, support: Client, world: World) -> None:
    add_rows = CHANGELISTS[name]
    url = reverse(f"admin:{name}_changelist")
    add_rows(5)
    with_5 = queries(support, url)
    add_rows(45)
    with_50 = queries(support, url)
    assert with_5 == with_50, f"{url}: {with_5} queries with 5 rows, {with_50} with 50"


def more_of_the_user(world: World, n: int) -> None:
    for _ in range(n):
        DeviceFactory(user=world.user)
        AuthCodeFactory(user=world.user, api_key=ApiKeyFactory(app=world.app))
    user_event(world.user.user_id, n)


def more_keys(world: World, n: int) -> None:
    for _ in range(n):
        ApiKeyFactory(app=world.app, rotated_from=ApiKeyFactory(app=world.app))


CHANGE_PAGES: dict[str, tuple[str, Callable[[World, int], object]]] = {
    "user": ("user", more_of_the_user),
    "device": ("phone", more_of_the_user),
    "app": ("app", more_keys),
    "apikey": ("key", more_keys),
    "authcode": ("code", more_of_the_user),
    "deletionrequest": ("deletion", more_of_the_user),
}


@pytest.mark.parametrize("page", CHANGE_PAGES)
def test_change_page_queries_do_not_grow_with_related_rows(
    page: str, support: Client, world: World
) -> None:
    attribute, add_rows = CHANGE_PAGES[page]
    obj = getattr(world, attribute)
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    add_rows(world, 4)
    with_5 = queries(support, url)
    add_rows(world, 45)
    with_50 = queries(support, url)
    assert with_5 == with_50, f"{url}: {with_5} queries with 5 rows, {with_50} with 50"


def test_a_disabled_users_page_costs_one_query_more_whatever_its_history(
    support: Client, world: World
) -> None:
    """The banner's last user.disabled event (who, why) is the one query a disabled user adds."""
    url = reverse("admin:accounts_linkeduser_change", args=[world.user.pk])
    more_of_the_user(world, 4)
    enabled = queries(support, url)
    services.set_user_disabled(user=world.user, disabled=True, actor=Actor.staff("support"))
    with_5 = queries(support, url)
    more_of_the_user(world, 45)
    with_50 = queries(support, url)
    assert (with_5, with_50) == (enabled + 1, enabled + 1)


def test_dashboard_queries_do_not_grow_with_rows(support: Client, world: World) -> None:
    def add(n: int) -> None:
        codes(n)
        devices(n)
        ApiKeyFactory.create_batch(n, expires_at=timezone.now() + dt.timedelta(days=3))

    url = reverse("admin:index")
    add(5)
    with_5 = queries(support, url)
    add(45)
    with_50 = queries(support, url)
    assert with_5 == with_50, f"{url}: {with_5} queries with 5 rows, {with_50} with 50"
