"""Support and key administration in a real browser (Debian's chromium) against the live
server: what staff see, click and confirm."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiKey, AuditAction, AuditEvent
from accounts.roles import KEY_ADMINISTRATORS, SUPPORT, setup_roles
from devices.models import InactiveReason
from tests.admin.conftest import PASSWORD, World, build_world, staff_user
from tests.staff import authenticator, code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT = Path(settings.BASE_DIR) / "artifacts" / "user-page.png"


@pytest.fixture
def staff_world(transactional_db: None) -> World:
    setup_roles()
    authenticator(staff_user("support", SUPPORT))
    authenticator(staff_user("keyadmin", KEY_ADMINISTRATORS))
    return build_world()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1400, "height": 1000}
    )
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def log_in(page: Any, username: str, steps_ahead: int = 0) -> None:
    """Password and the code of the member's authenticator app, as staff sign in."""
    device = TOTPDevice.objects.get(user__username=username, confirmed=True)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", code(device, steps_ahead))
    page.click("input[type=submit]")
    page.wait_for_selector("#staff-dashboard")


def test_support_finds_a_user_sees_its_devices_and_deactivates_one(
    page: Any, staff_world: World
) -> None:
    world = staff_world
    log_in(page, "support")
    page.click("#accounts-linkeduser a")
    page.fill("#searchbar", "alice@")
    page.press("#searchbar", "Enter")
    page.click(f"#result_list a:text('{world.user.user_id}')")

    devices = page.locator("#user-devices")
    phone = devices.locator("tr", has_text=world.phone.install_id)
    tablet = devices.locator("tr", has_text=world.tablet.install_id)
    assert phone.locator("td").nth(2).inner_text() == "Active"
    assert tablet.locator("td").nth(2).inner_text() == (
        f"Inactive: {InactiveReason.PHONE_PREFERRED.label}"
    )
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    phone.locator("a:text('Deactivate…')").click()
    assert "Deactivated by support" in page.locator("#staff-action-consequences").inner_text()
    page.click("input[type=submit][value='Deactivate']")

    page.wait_for_selector(".messagelist")
    assert "deactivated" in page.locator(".messagelist").inner_text()
    assert phone.locator("td").nth(2).inner_text() == "Inactive: Deactivated by support"
    newest = page.locator("#user-timeline tbody tr").first.inner_text()
    assert "Device Deactivated" in newest
    assert "support" in newest
    assert "DEACTIVATED_BY_SUPPORT" in newest
    assert AuditEvent.objects.filter(
        action=AuditAction.DEVICE_DEACTIVATED, actor="support"
    ).exists()


def test_a_key_administrator_sees_a_new_key_once_and_never_again(
    page: Any, staff_world: World
) -> None:
    world = staff_world
    log_in(page, "keyadmin")
    page.goto("/admin/accounts/apikey/")
    page.click("a.addlink")
    page.select_option("#id_app", str(world.app.pk))
    page.fill("#id_name", "browser key")
    page.check("input[name=scopes][value='user.read']")
    page.click("input[type=submit]")

    full_key = page.locator("code.shown-once-secret").inner_text()
    key_id, secret = full_key.split(".", 1)
    assert ApiKey.objects.get(key_id=key_id).name == "browser key"

    page.reload()  # resends the form: its nonce is spent, so nothing is created or shown
    assert secret not in page.content()
    assert ApiKey.objects.filter(name="browser key").count() == 1
    page.goto("/admin/accounts/apikey/")
    assert key_id in page.content()
    assert secret not in page.content()
    page.click(f"#result_list a:text('{key_id}')")
    assert "browser key" in page.content()
    assert secret not in page.content()


def app_code(secret: str, steps_ahead: int = 0) -> str:
    """What an authenticator app shows for the key typed in from the enrolment page."""
    totp = TOTP(base64.b32decode(secret.replace(" ", "")))
    totp.time = time.time() + steps_ahead * 30
    return f"{totp.token():06d}"


def test_a_new_staff_member_sets_up_two_factor_then_signs_in_with_it(
    page: Any, staff_world: World
) -> None:
    newcomer = staff_user("newcomer", SUPPORT)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "newcomer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    # Signed in with the password only: the enrolment page, with the QR code drawn inline.
    page.wait_for_selector("#staff-2fa-enrol-form")
    qr = page.locator("#staff-2fa-qr svg")
    assert qr.is_visible()
    assert qr.bounding_box()["width"] > 100
    secret = page.locator("#staff-2fa-secret").inner_text()
    device = TOTPDevice.objects.get(user=newcomer)
    assert base64.b32decode(secret.replace(" ", "")) == device.bin_key
    assert not device.confirmed
    page.goto("/admin/accounts/linkeduser/")  # nothing is reachable before the set-up
    page.wait_for_selector("#staff-2fa-enrol-form")

    page.fill("#id_token", app_code(secret))
    page.click("#staff-2fa-enrol-form input[type=submit]")
    page.wait_for_selector("#result_list, .paginator")
    assert "Two-factor sign-in is set up" in page.locator(".messagelist").inner_text()
    device.refresh_from_db()
    assert device.confirmed

    page.click("#logout-form button")
    page.wait_for_selector("text=Log in again")

    # From now on: password and code. Without the code the form refuses, like a bad password.
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "newcomer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    assert "authentication code" in page.locator(".errornote").inner_text()
    log_in(page, "newcomer", steps_ahead=1)  # the enrolment used this time step's code

    actions = list(
        AuditEvent.objects.filter(actor="newcomer")
        .order_by("occurred_at", "id")
        .values_list("action", flat=True)
    )
    assert actions == [
        AuditAction.STAFF_SIGNED_IN,
        AuditAction.STAFF_2FA_ENROLLED,
        AuditAction.STAFF_SIGNED_OUT,
        AuditAction.STAFF_SIGN_IN_FAILED,
        AuditAction.STAFF_SIGNED_IN,
    ]
    assert User.objects.get(username="newcomer").last_login is not None
