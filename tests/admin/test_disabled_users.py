"""A disabled user looks disabled in the admin (list, banner, its active device), and the
reason staff give for disabling a user or deactivating a device is kept in the audit event
and shown in the timeline."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services as account_services
from accounts.audit import MAX_NOTE_LENGTH, Actor
from accounts.models import AuditAction, AuditEvent
from devices import services as device_services
from portal.errors import DomainError
from tests.admin.conftest import World
from tests.admin.pages import action_page

STAFF = Actor.staff("support")


def user_page(world: World) -> str:
    return reverse("admin:accounts_linkeduser_change", args=[world.user.pk])


def disable(client: Client, world: World, reason: str = ""):
    return client.post(action_page(world.user, "disable"), {"ids": world.user.pk, "reason": reason})


def test_the_user_list_marks_a_disabled_user_in_its_status(support: Client, world: World) -> None:
    changelist = reverse("admin:accounts_linkeduser_changelist")

    def row() -> str:
        text = support.get(changelist).text
        return text.split(world.user.user_id, 1)[1].split("</tr>", 1)[0]

    assert "Active" in row()
    assert "disabled" not in row()
    account_services.set_user_disabled(user=world.user, disabled=True, actor=STAFF)
    assert '<strong class="user-disabled"' in row()
    assert "Active, disabled</strong>" in row()


def test_an_enabled_user_has_no_banner(support: Client, world: World) -> None:
    page = support.get(user_page(world)).text
    assert "user-disabled-banner" not in page
    assert "<strong>Active</strong>" in page


def test_the_page_of_a_disabled_user_says_since_when_by_whom_and_why(
    support: Client, world: World
) -> None:
    assert disable(support, world, "chargeback, ticket 4711").status_code == 302
    world.user.refresh_from_db()
    page = support.get(user_page(world)).text

    banner = page.split('id="user-disabled-banner"', 1)[1].split("</p>", 1)[0]
    assert f"since {world.user.disabled_at:%Y-%m-%d %H:%M} UTC" in banner
    assert "by Staff support" in banner
    assert "chargeback, ticket 4711" in banner
    assert "codes and tokens are refused" in banner
    assert "Active, disabled" in page.split('id="user-devices"', 1)[0], "the status field"
    # The phone keeps its place (enabling gives it back), but is not shown as plainly active.
    assert "Active (user disabled)" in page
    assert "<strong>Active" not in page


def test_the_banner_names_the_latest_disabling(support: Client, world: World) -> None:
    account_services.set_user_disabled(user=world.user, disabled=True, actor=STAFF, reason="1st")
    account_services.set_user_disabled(user=world.user, disabled=False, actor=STAFF)
    account_services.set_user_disabled(
        user=world.user, disabled=True, actor=Actor.operator("console"), reason="2nd"
    )
    banner = support.get(user_page(world)).text.split('id="user-disabled-banner"', 1)[1]
    assert "by Operator console (reason: 2nd)" in banner.split("</p>", 1)[0]


def test_the_device_list_and_page_show_the_user_is_disabled(support: Client, world: World) -> None:
    account_services.set_user_disabled(user=world.user, disabled=True, actor=STAFF)
    assert "Active (user disabled)" in support.get(reverse("admin:devices_device_changelist")).text
    device_page = reverse("admin:devices_device_change", args=[world.phone.pk])
    assert "Active (user disabled)" in support.get(device_page).text


def test_the_disabling_reason_is_kept_and_shown_escaped(support: Client, world: World) -> None:
    reason = "<b>fraud</b> & abuse, ticket 4711"
    page = support.get(action_page(world.user, "disable")).text
    assert 'name="reason"' in page

    disable(support, world, f"  {reason}  ")

    [event] = AuditEvent.objects.filter(action=AuditAction.USER_DISABLED)
    assert event.details == {"note": reason}
    escaped = "note: &lt;b&gt;fraud&lt;/b&gt; &amp; abuse, ticket 4711"
    history = reverse("admin:accounts_linkeduser_history", args=[world.user.pk])
    for url in (user_page(world), history):
        text = support.get(url).text
        assert escaped in text
        assert "<b>fraud</b>" not in text


def test_no_reason_stores_no_note(support: Client, world: World) -> None:
    disable(support, world, "   ")
    [event] = AuditEvent.objects.filter(action=AuditAction.USER_DISABLED)
    assert event.details == {}


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("x" * (MAX_NOTE_LENGTH + 1), f"At most {MAX_NOTE_LENGTH} characters"),
        ("first line\nsecond line", "no line breaks, tabs or other control characters"),
        ("tab\there", "no line breaks, tabs or other control characters"),
        ("nul\x00byte", "Null characters are not allowed"),
    ],
)
def test_a_bad_reason_is_a_form_error_and_changes_nothing(
    support: Client, world: World, reason: str, error: str
) -> None:
    response = disable(support, world, reason)
    assert response.status_code == 200
    assert error in response.text
    assert 'class="errorlist' in response.text
    world.user.refresh_from_db()
    assert world.user.disabled_at is None
    assert not AuditEvent.objects.filter(action=AuditAction.USER_DISABLED).exists()

    response = support.post(
        action_page(world.phone, "deactivate"), {"ids": world.phone.pk, "reason": reason}
    )
    assert response.status_code == 200
    assert error in response.text
    world.phone.refresh_from_db()
    assert world.phone.is_active


def test_the_deactivation_reason_is_kept_beside_the_devices_reason(
    support: Client, world: World
) -> None:
    assert 'name="reason"' in support.get(action_page(world.phone, "deactivate")).text
    support.post(
        action_page(world.phone, "deactivate"),
        {"ids": world.phone.pk, "reason": "customer lost the phone"},
    )
    world.phone.refresh_from_db()
    assert world.phone.inactive_reason == "DEACTIVATED_BY_SUPPORT"
    [event] = AuditEvent.objects.filter(action=AuditAction.DEVICE_DEACTIVATED)
    assert event.details == {"reason": "DEACTIVATED_BY_SUPPORT", "note": "customer lost the phone"}
    timeline = support.get(user_page(world)).text.split('id="user-timeline"', 1)[1]
    [row] = [row for row in timeline.split("<tr>") if "note: customer lost the phone" in row]
    assert f"device {world.phone.install_id}" in row
    assert "reason: DEACTIVATED_BY_SUPPORT" in row


@pytest.mark.parametrize(
    "reason", ["x" * (MAX_NOTE_LENGTH + 1), "two\nlines", "escape\x1b[31m", "\ud800"]
)
def test_the_services_refuse_a_bad_reason_before_changing_anything(
    world: World, reason: str
) -> None:
    """Every caller (admin, console, commands) gets the same rule, not only the admin form."""
    with pytest.raises(DomainError, match="reason"):
        account_services.set_user_disabled(
            user=world.user, disabled=True, actor=STAFF, reason=reason
        )
    with pytest.raises(DomainError, match="reason"):
        device_services.deactivate_device(device=world.phone, actor=STAFF, reason=reason)
    world.user.refresh_from_db()
    world.phone.refresh_from_db()
    assert world.user.disabled_at is None
    assert world.phone.is_active
    assert not AuditEvent.objects.filter(
        action__in=[AuditAction.USER_DISABLED, AuditAction.DEVICE_DEACTIVATED]
    ).exists()


def test_a_reason_at_the_limit_is_kept_whole(world: World) -> None:
    reason = "é" * MAX_NOTE_LENGTH
    account_services.set_user_disabled(user=world.user, disabled=True, actor=STAFF, reason=reason)
    assert AuditEvent.objects.get(action=AuditAction.USER_DISABLED).details == {"note": reason}
