"""The app pages in a real browser: an owner who just got in creates a key, the key just shown
issues an auth code through the customer API, is rotated, revoked and refused; then a user is
found, deleted, and its deletion followed from pending to completed after the purge."""

from __future__ import annotations

import json
from typing import Any

import pytest

from accounts import services
from accounts.audit import Actor
from accounts.models import ActorType, AuditAction, AuditEvent, DeletionRequest
from accounts.services import users as user_services
from console.models import Role
from console.services import team
from tests.console.browser import accept_invitation
from tests.factories import AppFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAIL = "dev@customer.example"


def issue(page: Any, full_key: str, external_id: str) -> Any:
    """POST /users/auth-code as a customer backend does, through the live server."""
    return page.request.post(
        "/users/auth-code",
        data=json.dumps({"external_id": external_id}),
        headers={"Authorization": f"Bearer {full_key}", "Content-Type": "application/json"},
    )


def shown_key(page: Any) -> str:
    page.wait_for_selector("#full-key")
    assert "Never ship this key in an app" in page.content()
    assert page.locator("button.copy").is_visible()  # copy.js ran under the CSP
    return page.input_value("#full-key")


def test_keys_then_a_users_deletion(console_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    page = console_page
    app = AppFactory(name="Journey app")
    invitation = team.invite(app=app, email=EMAIL, role=Role.OWNER, actor=Actor.operator("t"))
    accept_invitation(page, invitation.url)
    page.click("#recovery-codes-done")
    page.wait_for_selector("nav.appnav")

    # create a key: shown once, and it works at once
    page.click("nav.appnav a:text('API keys')")
    page.click("a:text('Create a key')")
    page.fill("#id_name", "backend")
    page.check("input[name=scopes][value='user.delete']")
    page.fill("#id_expires_in_days", "90")
    page.click("form.stacked button[type=submit]")
    first_key = shown_key(page)
    answer = issue(page, first_key, "alice")
    assert answer.status == 200 and answer.json()["authentication_code"]

    # rotate with no grace: the successor is shown once; revoke it; it is refused at once
    page.click("a:text('back to the keys')")
    page.click("#live-keys a:text('Rotate…')")
    page.fill("#id_grace_hours", "0")
    page.click("form.stacked button[type=submit]")
    second_key = shown_key(page)
    assert second_key != first_key
    assert issue(page, second_key, "alice").status == 200
    page.click("a:text('back to the keys')")
    second_id = second_key.split(".")[0]
    page.locator("#live-keys tr", has_text=second_id).locator("a:text('Revoke…')").click()
    page.click("button:text('Revoke the key')")
    page.wait_for_selector("#key-history")
    assert second_id in page.locator("#key-history").inner_text()
    refused = issue(page, second_key, "alice")
    assert refused.status == 401 and refused.json()["errorCode"] == "API_KEY_REVOKED"

    # find the user and delete it; the purge is what completes the request
    monkeypatch.setattr(user_services, "_enqueue_purge", lambda request_id: None)
    page.click("nav.appnav a:text('Users')")
    page.fill("#q", "ali")
    page.press("#q", "Enter")
    page.click("#results a:text('alice')")
    page.click("a:text('Delete this user…')")
    page.fill("#id_external_id", "alice")
    page.click("button:text('Delete the user')")
    page.wait_for_selector("#request-id")
    request_id = page.inner_text("#request-id")
    assert page.inner_text("#deletion-status") == "pending"
    assert services.purge_deleted_user(request_id=request_id)
    page.reload()
    assert page.inner_text("#deletion-status") == "completed"
    assert DeletionRequest.objects.get(request_id=request_id).status == "done"

    assert page.csp_violations == []
    assert list(
        AuditEvent.objects.filter(actor_type=ActorType.CONSOLE, actor=EMAIL, app=app)
        .exclude(action__startswith="console.")
        .exclude(action__startswith="team.")
        .order_by("pk")
        .values_list("action", flat=True)
    ) == [
        AuditAction.KEY_CREATED,
        AuditAction.KEY_CREATED,
        AuditAction.KEY_ROTATED,
        AuditAction.KEY_REVOKED,
        AuditAction.USER_DELETED,
    ]
