"""The services write the story of a user: who did what, when, in the same transaction."""

import pytest
from rest_framework.test import APIClient

from accounts import services
from accounts.audit import Actor
from accounts.models import AuditEvent, LinkedUser
from tests.helpers import issue_code, redeem

pytestmark = pytest.mark.django_db


def _story(user_id: str) -> list[tuple[str, str, str, str]]:
    events = AuditEvent.objects.filter(user_ref=user_id).order_by("occurred_at", "id")
    return [(e.action, e.actor_type, e.target_id, e.details.get("reason", "")) for e in events]


def test_a_users_life_in_events(customer, api, app):
    first = issue_code(customer, "alice")
    user_id = first["user_id"]
    redeem(api, first["authentication_code"], app.app_id, "phone-one-1")
    redeem(api, issue_code(customer, "alice")["authentication_code"], app.app_id, "phone-two-2")
    tablet = redeem(
        api,
        issue_code(customer, "alice")["authentication_code"],
        app.app_id,
        "tablet-one-1",
        form_factor="tablet",
    ).json()
    sdk = APIClient()
    sdk.credentials(HTTP_AUTHORIZATION=f"Bearer {tablet['access_token']}")
    sdk.post("/sdk/reset")
    user = LinkedUser.objects.get(user_id=user_id)
    services.set_user_disabled(user=user, disabled=True, actor=Actor.staff("sam"))
    services.set_user_disabled(user=user, disabled=True, actor=Actor.staff("sam"))  # no change
    services.set_user_disabled(user=user, disabled=False, actor=Actor.staff("sam"))
    customer.delete(f"/users/{user_id}")

    assert _story(user_id) == [
        ("user.created", "device", user_id, ""),
        ("device.activated", "device", "phone-one-1", ""),
        ("user.restored", "device", user_id, ""),
        ("device.deactivated", "device", "phone-one-1", "REPLACED_BY_NEWER_DEVICE"),
        ("device.activated", "device", "phone-two-2", ""),
        ("user.restored", "device", user_id, ""),
        ("device.deactivated", "device", "tablet-one-1", "PHONE_PREFERRED"),
        ("device.deactivated", "device", "tablet-one-1", "RESET"),
        ("user.disabled", "staff", user_id, ""),
        ("user.enabled", "staff", user_id, ""),
        ("user.deleted", "api_key", user_id, ""),
    ]
    created = AuditEvent.objects.get(action="user.created")
    assert created.details["issued_by_key"] == customer.api_key.key_id
    assert created.app_id == app.pk


def test_a_refused_redemption_leaves_no_event(customer, api, app):
    code = issue_code(customer, "alice")["authentication_code"]
    redeem(api, code, app.app_id, "phone-one-1")
    redeem(api, code, app.app_id, "phone-two-2")  # 409: already used
    assert AuditEvent.objects.filter(target_id="phone-two-2").count() == 0


def test_the_purge_is_recorded_without_personal_data(
    customer, app, django_capture_on_commit_callbacks
):
    user_id = issue_code(customer, "alice@example.com")["user_id"]
    with django_capture_on_commit_callbacks(execute=True):
        customer.delete(f"/users/{user_id}")
    assert [e[0] for e in _story(user_id)] == ["user.deleted", "user.purged"]
    text = str(list(AuditEvent.objects.values()))
    assert "alice@example.com" not in text
