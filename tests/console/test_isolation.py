"""Tenant isolation, table-driven: every console URL (walked from console.urls, so every page
added later is covered), times every way of asking for it without the right to → the expected
404, 403 or redirect, on GET and on POST, and nothing written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from console import urls as console_urls
from console.models import Membership, Role
from events.models import Delivery, Event, WebhookEndpoint
from tests import staff
from tests.factories import (
    ApiKeyFactory,
    AppFactory,
    DeletionRequestFactory,
    LinkedUserFactory,
    MembershipFactory,
    PersonFactory,
)

pytestmark = pytest.mark.django_db

PUBLIC = {
    # Pages for whoever is not signed in yet (H2's sign-in, reset and invitation pages).
    "sign_in",
    "second_factor",
    "sign_out",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "invitation",
    "invitation_accept",
}
WATCHED = [
    "accounts.App",
    "accounts.ApiKey",
    "accounts.LinkedUser",
    "accounts.DeletionRequest",
    "accounts.AuditEvent",
    "console.Membership",
    "console.Invitation",
    "events.WebhookEndpoint",
    "events.Delivery",
    "events.Event",
]
POSTED = {
    "name": "new key",
    "scopes": ["user.link"],
    "expires_in_days": "60",
    "grace_hours": "1",
    "reason": "no",
    "config": '{"taken": true}',
    "save": "1",
    "email": "intruder@example.com",
    "role": "owner",
}


def routes() -> list[URLPattern]:
    return [p for p in console_urls.urlpatterns if isinstance(p, URLPattern)]


def app_routes() -> list[URLPattern]:
    return [p for p in routes() if "app_id" in p.pattern.converters]


def person_routes() -> list[URLPattern]:
    return [p for p in routes() if "app_id" not in p.pattern.converters and p.name not in PUBLIC]


def needed(route: URLPattern) -> Role:
    role = getattr(route.callback, "needed_role", None)
    assert role is not None, f"{route.name}: an app page must be wrapped by member_of_app"
    return role


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the watched tables, every column, in primary-key order. In plain SQL: the
    module takes some 650 of these, and through the ORM they were half of its time."""
    quote = connection.ops.quote_name
    rows = {}
    with connection.cursor() as cursor:
        for label in WATCHED:
            meta = apps.get_model(label)._meta
            table, pk = quote(meta.db_table), quote(meta.pk.column)
            cursor.execute(f"SELECT * FROM {table} ORDER BY {pk}")  # noqa: S608 (model names)
            rows[label] = cursor.fetchall()
    return rows


class World:
    """Two apps with one of everything each; `path(route, of)` builds the route's URL with the
    app id and object ids of app `of` ("a" or "b")."""

    def __init__(self) -> None:
        now = timezone.now()
        self.objects: dict[str, dict[str, Any]] = {}
        for name in ("a", "b"):
            app = AppFactory()
            user = LinkedUserFactory(app=app, external_id=f"user-of-{name}")
            gone = DeletionRequestFactory(app=app)
            member = MembershipFactory(app=app, role=Role.VIEWER)
            invitation = apps.get_model("console.Invitation").objects.create(
                app=app,
                email=f"invited-{name}@example.com",
                role=Role.VIEWER,
                token_digest=f"{name}" * 64,
                invited_by="staff",
                expires_at=now + dt.timedelta(days=1),
            )
            endpoint = WebhookEndpoint.objects.create(
                app=app, url=f"https://hooks-{name}.example.com/", secret_encrypted="x"
            )
            event = Event.objects.create(app=app, type="user.created", dispatched_at=now)
            delivery = Delivery.objects.create(event=event, endpoint=endpoint)
            self.objects[name] = {
                "app_id": app.app_id,
                "key_id": ApiKeyFactory(app=app).key_id,
                "user_id": user.user_id,
                "request_id": gone.request_id,
                "member_id": member.pk,
                "invitation_id": invitation.pk,
                "endpoint_id": endpoint.endpoint_id,
                "delivery_id": delivery.pk,
                "app": app,
            }

    def path(self, route: URLPattern, of: str = "a", objects_of: str | None = None) -> str:
        values = self.objects[objects_of or of]
        kwargs = {}
        for name, converter in route.pattern.converters.items():
            if name == "app_id":
                kwargs[name] = self.objects[of]["app_id"]
            elif name in values:
                kwargs[name] = values[name]
            else:
                kwargs[name] = 987654 if converter.regex == "[0-9]+" else "unknown"
        return reverse(f"console:{route.name}", kwargs=kwargs)


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[World]:
    """Built once for the module's few hundred cases, outside their transactions (each case
    rolls back what it adds, and asserts it changed nothing of the world), then removed."""
    with django_db_blocker.unblock():
        built = World()
    yield built
    with django_db_blocker.unblock():
        ours = [objects["app"] for objects in built.objects.values()]
        Delivery.objects.filter(endpoint__app__in=ours).delete()
        Event.objects.filter(app__in=ours).delete()
        WebhookEndpoint.objects.filter(app__in=ours).delete()
        people = list(User.objects.filter(console_memberships__app__in=ours).values_list("pk"))
        for app in ours:
            app.delete()
        User.objects.filter(pk__in=[pk for (pk,) in people]).delete()


def member_of(world: World, role: Role, app: str = "a") -> Client:
    membership: Membership = MembershipFactory(app=world.objects[app]["app"], role=role)
    return staff.signed_in(membership.user)


def without_second_factor(world: World) -> Client:
    client = Client()
    client.force_login(MembershipFactory(app=world.objects["a"]["app"], role=Role.OWNER).user)
    return client


def staff_member(world: World) -> Client:
    person: User = PersonFactory(is_staff=True, is_superuser=True)
    return staff.signed_in(person)


def ask(client: Client, method: str, path: str) -> Any:
    return client.post(path, POSTED) if method == "POST" else client.get(path)


METHODS = ["GET", "POST"]
CASES: dict[str, tuple[Callable[[World], Client], Callable[[URLPattern], tuple[int, str] | None]]]
CASES = {
    "member of another app": (lambda w: member_of(w, Role.OWNER, app="b"), lambda r: (404, "")),
    # An admin session is no console session: staff are sent to the console's sign-in.
    "staff without membership": (staff_member, lambda r: (302, reverse("console:sign_in"))),
    "viewer on a developer action": (
        lambda w: member_of(w, Role.VIEWER),
        lambda r: None if Role.VIEWER.allows(needed(r)) else (403, ""),
    ),
    "developer on an owner action": (
        lambda w: member_of(w, Role.DEVELOPER),
        lambda r: None if Role.DEVELOPER.allows(needed(r)) else (403, ""),
    ),
    "anonymous": (lambda w: Client(), lambda r: (302, reverse("console:sign_in"))),
    "signed in without 2FA": (
        without_second_factor,
        lambda r: (302, reverse("console:second_factor")),
    ),
}


def refused_app_calls() -> list[Any]:
    """Every (app page, way of asking without the right) pair that must be refused; a role
    the page is open to is left out (the page tests cover what it sees)."""
    return [
        pytest.param(route, case, id=f"{route.name}-{case}")
        for route in app_routes()
        for case, (_, expect) in CASES.items()
        if expect(route) is not None
    ]


def routes_with_objects() -> list[URLPattern]:
    return [r for r in app_routes() if any(name != "app_id" for name in r.pattern.converters)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("route", "case"), refused_app_calls())
def test_app_pages(world: World, route: URLPattern, case: str, method: str) -> None:
    make_client, expect = CASES[case]
    client = make_client(world)
    before = snapshot()
    response = ask(client, method, world.path(route))
    status, target = expect(route)
    assert response.status_code == status, (route.name, case, method)
    if target:
        assert response.url.startswith(target)
    if status == 404:
        assert world.objects["a"]["app"].name not in response.content.decode()
    assert snapshot() == before


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("route", routes_with_objects(), ids=lambda r: r.name)
def test_another_apps_objects_in_my_apps_urls(world: World, route: URLPattern, method: str) -> None:
    """An owner of app a, with the object ids of app b in a's URLs: not found."""
    client = member_of(world, Role.OWNER)
    before = snapshot()
    response = ask(client, method, world.path(route, of="a", objects_of="b"))
    assert response.status_code in (404, 405), (route.name, method)
    assert snapshot() == before


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["anonymous", "signed in without 2FA"])
@pytest.mark.parametrize("route", person_routes(), ids=lambda r: r.name)
def test_person_pages(world: World, route: URLPattern, case: str, method: str) -> None:
    make_client, expect = CASES[case]
    client = make_client(world)
    before = snapshot()
    response = ask(client, method, world.path(route))
    status, target = expect(route)
    assert response.status_code == status, (route.name, case, method)
    assert response.url.startswith(target)
    assert snapshot() == before


def test_every_app_page_is_covered() -> None:
    names = {route.name for route in app_routes()}
    assert {
        "overview",
        "keys",
        "key_create",
        "users",
        "user_detail",
        "config",
        "audit",
        "team",
        "webhooks",
        "webhook_create",
        "webhook_detail",
        "webhook_redeliver",
    } <= names
    for route in app_routes():
        needed(route)
