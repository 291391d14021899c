"""The admin fits the screens support works on, in Debian's chromium: every list on a
1366 px laptop without a horizontal scroll (of the page or of the list itself), with a full
page of rows whose values are as long as the models allow, and a user's page on a phone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from accounts import audit, services
from accounts.audit import MAX_NOTE_LENGTH, Actor
from accounts.models import ApiKey, App, AuditAction, LinkedUser
from devices.models import FormFactor, Platform
from tests.admin.conftest import World, build_world, staff_user
from tests.admin.pages import MODELS
from tests.factories import (
    ApiKeyFactory,
    AppFactory,
    AuthCodeFactory,
    DeletionRequestFactory,
    DeviceFactory,
    LinkedUserFactory,
)
from tests.staff import signed_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = 50  # a full page of every list
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}

OVERFLOW = """() => {
    const wider = (el) => el.scrollWidth > el.clientWidth + 1;
    const page = document.documentElement;
    return {
        viewport: window.innerWidth,
        page: page.scrollWidth,
        scrolled: [...document.querySelectorAll("#changelist .results, fieldset, .module")]
            .filter(wider)
            .map((el) => `${el.id || el.className}: ${el.scrollWidth} > ${el.clientWidth}`),
        columns: [...document.querySelectorAll("#result_list thead th")]
            .map((th) => `${th.innerText.trim() || th.className}=${Math.round(th.offsetWidth)}`),
    };
}"""


def longest(prefix: str, length: int) -> str:
    """`prefix` made exactly `length` characters long, padded with digits: nowhere after
    the prefix can a line break."""
    return (prefix + "0123456789" * (length // 10 + 1))[:length]


def max_length(model: type, field: str) -> int:
    return model._meta.get_field(field).max_length


def crowded_world() -> World:
    """A page of rows for every list, each value as long as its column allows: the longest
    app and key names, external ids, install ids, device models and staff usernames."""
    world = build_world()
    now = timezone.now()
    name_length = max_length(App, "name")
    apps = [
        AppFactory(name=longest(f"Customer application {i} with a long name", name_length))
        for i in range(ROWS)
    ]
    App.objects.filter(pk=world.app.pk).update(name=longest("Acme", name_length))
    for i, app in enumerate(apps):
        key = ApiKeyFactory(
            app=app,
            name=longest(f"backend key {i}", max_length(ApiKey, "name")),
            last_used_at=now,
        )
        user = LinkedUserFactory(
            app=app,
            status="active",
            external_id=longest(f"user{i}@example.com", max_length(LinkedUser, "external_id")),
            disabled_at=now if i % 3 == 0 else None,
        )
        install_id = longest(f"install-{i}", 64)
        DeviceFactory(
            user=user,
            install_id=install_id,
            platform=Platform.IOS if i % 2 else Platform.ANDROID,
            form_factor=FormFactor.TABLET if i % 2 else FormFactor.PHONE,
            model=longest("iPad Pro (12.9-inch) (6th generation)", 128),
            is_active=True,
            inactive_reason=None,
        )
        AuthCodeFactory(
            user=user,
            api_key=key,
            status="redeemed",
            redeemed_at=now,
            redeemed_install_id=install_id,
            expires_at=now + dt.timedelta(minutes=10),
        )
        DeletionRequestFactory(app=app, requested_by_key_id=key.key_id, completed_at=now)
        audit.record(
            audit.event(
                actor=Actor.staff(longest(f"support-{i}", 150)),
                action=AuditAction.DEVICE_DEACTIVATED,
                target_type="device",
                target_id=install_id,
                app_id=app.pk,
                user_ref=user.user_id,
                details={"reason": "DEACTIVATED_BY_SUPPORT", "note": "x" * MAX_NOTE_LENGTH},
            )
        )
    services.set_user_disabled(user=world.user, disabled=True, actor=Actor.staff("support"))
    return world


@pytest.fixture
def root_user(transactional_db: None) -> User:
    """A superuser: every list, every column, filter and action there is."""
    return staff_user("root", is_superuser=True)


@pytest.fixture
def signed_in_context(browser: Any, live_server: Any, root_user: User) -> Iterator[Any]:
    def new_context(viewport: dict[str, int]) -> Any:
        context = browser.new_context(base_url=live_server.url, viewport=viewport)
        context.set_default_timeout(10_000)
        session = signed_in(root_user).cookies[settings.SESSION_COOKIE_NAME].value
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
        )
        contexts.append(context)
        return context

    contexts: list[Any] = []
    yield new_context
    for context in contexts:
        context.close()


def test_every_list_fits_a_laptop_screen_without_horizontal_scroll(
    signed_in_context: Any,
) -> None:
    crowded_world()
    page = signed_in_context(LAPTOP).new_page()
    overflowing = {}
    for label, model in MODELS:
        page.goto(reverse(f"admin:{label}_{model}_changelist"))
        assert page.locator("#result_list tbody tr").count() >= ROWS, model
        measured = page.evaluate(OVERFLOW)
        if measured["page"] > measured["viewport"] or measured["scrolled"]:
            overflowing[model] = measured
    assert overflowing == {}


def test_a_users_page_is_readable_on_a_phone(signed_in_context: Any) -> None:
    """No sideways scrolling: the fields, and the devices, codes and timeline one block per
    row with each value under its label."""
    world = crowded_world()
    external_id = longest("alice@example.com", max_length(LinkedUser, "external_id"))
    LinkedUser.objects.filter(pk=world.user.pk).update(external_id=external_id)
    page = signed_in_context(PHONE).new_page()
    page.goto(reverse("admin:accounts_linkeduser_change", args=[world.user.pk]))

    measured = page.evaluate(OVERFLOW)
    assert measured["page"] <= measured["viewport"], measured
    assert measured["scrolled"] == [], measured
    phone = page.locator("#user-devices tbody tr", has_text=world.phone.install_id)
    for element in [
        page.locator("#user-disabled-banner"),
        page.locator(".field-external_id .readonly"),
        page.locator(".field-state .readonly"),
        phone.locator("td[data-label=State]", has_text="Active (user disabled)"),
        phone.locator("td[data-label=Device]", has_text="Android phone, Pixel 9"),
        page.locator("#user-codes td[data-label=Status]", has_text="redeemed"),
        page.locator("#user-timeline td[data-label=What]", has_text="User Disabled"),
    ]:
        box = element.bounding_box()
        assert box is not None, element
        assert box["x"] >= 0, (element, box)
        assert box["x"] + box["width"] <= PHONE["width"], (element, box)
    assert page.locator(".field-external_id .readonly").inner_text() == external_id
