"""The way in, in a real browser: an invitation link, a password, the authenticator enrolled
from the key the page shows, the recovery codes shown once, then the console; signing out and
in again with password and code."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent
from console.models import Membership, Role
from console.services import team
from tests.console.browser import accept_invitation, sign_in, sign_out
from tests.factories import AppFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_invited_owner_gets_in_enrols_and_signs_in_again(console_page: Any) -> None:
    page = console_page
    app = AppFactory(name="Browser app")
    new = team.invite(
        app=app, email="owner@customer.example", role=Role.OWNER, actor=Actor.operator("test")
    )
    secret, *codes = accept_invitation(page, new.url)
    assert len(codes) == 10
    page.click("#recovery-codes-done")
    page.wait_for_selector("nav.appnav")
    assert page.url.endswith(f"/console/apps/{app.app_id}/")
    assert "Browser app" in page.locator("nav.appnav").inner_text()
    assert Membership.objects.get(app=app).role == Role.OWNER

    page.goto("/console/account/")
    assert "10 of 10 recovery codes left" in page.content()
    assert not any(code in page.content() for code in codes)  # shown once only
    assert not any(code in page.content() for code in codes)

    sign_out(page)
    sign_in(page, "owner@customer.example", secret)
    page.goto(f"/console/apps/{app.app_id}/team/")
    assert "owner@customer.example" in page.locator("#team-members").inner_text()
    assert page.csp_violations == []
    assert list(
        AuditEvent.objects.filter(actor="owner@customer.example")
        .order_by("pk")
        .values_list("action", flat=True)
    ) == [
        AuditAction.TEAM_JOINED,
        AuditAction.CONSOLE_2FA_ENROLLED,
        AuditAction.CONSOLE_SIGNED_IN,
        AuditAction.CONSOLE_SIGNED_OUT,
        AuditAction.CONSOLE_SIGNED_IN,
    ]
