"""The Webhooks page in a real browser: an owner adds an endpoint pointing at a real receiver,
copies the secret shown once (the copy button works under the CSP), sends a test event that
arrives signed with it and whose answer the endpoint's page then shows, and rotates it."""

from __future__ import annotations

import os
from typing import Any

import pytest

from accounts.audit import Actor
from console.models import Role
from console.services import team
from events import services
from events.models import Delivery
from tests.console.browser import accept_invitation
from tests.events.receiver import receiver, verify
from tests.factories import AppFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS", "")
"""A folder to keep screenshots of the pages in (for a look by eye); none by default."""


def snap(page: Any, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def test_add_an_endpoint_test_it_and_rotate_its_secret(console_page: Any, settings) -> None:
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    page = console_page
    app = AppFactory(name="Hooks app")
    invitation = team.invite(
        app=app, email="dev@customer.example", role=Role.OWNER, actor=Actor.operator("t")
    )
    accept_invitation(page, invitation.url)
    page.click("#recovery-codes-done")
    with receiver() as hook:
        page.click("nav.appnav a:text('Webhooks')")
        page.click("a:text('Add an endpoint')")
        page.fill("#id_url", hook.url)
        page.uncheck("#id_all_events")
        page.check("input[name=events][value='user.deleted']")
        snap(page, "webhook_create")
        page.click("form.stacked button[type=submit]")
        page.wait_for_selector("#signing-secret")
        assert page.locator("button.copy").is_visible()  # copy.js ran under the CSP
        secret = page.input_value("#signing-secret")
        assert secret.startswith("whsec_")
        snap(page, "webhook_secret_shown_once")

        page.click("a:text('on to the endpoint')")
        page.click("button:text('Send a test event')")
        page.wait_for_selector("text=webhook.test event is on its way")
        delivery = Delivery.objects.get(endpoint__app=app)
        assert services.attempt_delivery(delivery_id=delivery.pk).outcome.succeeded
        got = hook.requests[0]
        assert verify(secret, got.headers, got.body) and got.event["type"] == "webhook.test"
        page.reload()
        log = page.locator("#deliveries").inner_text()
        assert "webhook.test" in log and "200" in log and "answered 200" not in log
        page.click("#deliveries summary")
        assert "answered 200" in page.locator("#deliveries").inner_text()
        assert secret not in page.content()
        snap(page, "webhook_detail")

        page.click("a:text('Rotate the signing secret…')")
        page.click("button:text('Rotate the secret')")
        page.wait_for_selector("#signing-secret")
        assert "keeps signing beside this one for 24 hours" in page.content()
        assert page.input_value("#signing-secret") not in (secret, "")
        page.click("nav.appnav a:text('Webhooks')")
        assert "user.deleted" in page.locator("#endpoints").inner_text()
        snap(page, "webhooks")
    assert page.csp_violations == []
