"""Each admin action runs its service and leaves its audit event, with the staff member as
the actor; confirmation pages say what will happen before anything does."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import crypto
from accounts.models import ActorType, ApiKey, AuditAction, AuditEvent, DeletionRequest
from devices.models import Device, FormFactor, InactiveReason
from tests.admin.conftest import World, device_with_token
from tests.admin.pages import action_page, add_key_page


def staff_events(action: AuditAction, actor: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, actor_type=ActorType.STAFF, actor=actor))


def grant(user: User, codename: str) -> None:
    user.user_permissions.add(Permission.objects.get(codename=codename))


def test_disable_and_enable_a_user(support: Client, world: World) -> None:
    page = support.get(action_page(world.user, "disable"))
    assert "refused until the user is enabled again" in page.text
    response = support.post(action_page(world.user, "disable"), {"ids": world.user.pk})
    assert response.status_code == 302
    world.user.refresh_from_db()
    assert world.user.disabled_at is not None
    assert len(staff_events(AuditAction.USER_DISABLED, "support")) == 1

    support.post(action_page(world.user, "enable"), {"ids": world.user.pk})
    world.user.refresh_from_db()
    assert world.user.disabled_at is None
    [event] = staff_events(AuditAction.USER_ENABLED, "support")
    assert event.user_ref == world.user.user_id


def test_the_changelist_action_leads_to_the_confirmation(support: Client, world: World) -> None:
    response = support.post(
        reverse("admin:accounts_linkeduser_changelist"),
        {"action": "disable", "_selected_action": [world.user.pk]},
    )
    assert response.status_code == 302
    assert response["Location"].startswith(action_page(world.user, "disable"))
    world.user.refresh_from_db()
    assert world.user.disabled_at is None, "nothing happens before the confirmation"


def test_delete_a_user_through_the_deletion_service(
    support: Client, support_user: User, world: World
) -> None:
    grant(support_user, "erase_linkeduser")
    assert "Irreversible" in support.get(action_page(world.user, "delete")).text
    support.post(action_page(world.user, "delete"), {"ids": world.user.pk})
    world.user.refresh_from_db()
    assert world.user.status == "deleted"
    assert DeletionRequest.objects.filter(deleted_user_id=world.user.user_id).exists()
    world.phone.refresh_from_db()
    assert world.phone.inactive_reason == InactiveReason.USER_DELETED
    assert len(staff_events(AuditAction.USER_DELETED, "support")) == 1


def test_after_a_deletion_the_admin_lands_on_the_deletion_request(
    support: Client, support_user: User, world: World
) -> None:
    grant(support_user, "erase_linkeduser")
    user_page = reverse("admin:accounts_linkeduser_change", args=[world.user.pk])
    response = support.post(
        action_page(world.user, "delete"), {"ids": world.user.pk, "next": user_page}
    )
    deletion = DeletionRequest.objects.get(deleted_user_id=world.user.user_id)
    deletion_page = reverse("admin:accounts_deletionrequest_change", args=[deletion.pk])
    assert response.status_code == 302
    assert response["Location"] == deletion_page
    page = support.get(deletion_page)
    assert page.status_code == 200
    assert f"User {world.user.user_id} is deleted" in page.text
    assert deletion.request_id in page.text


def test_without_access_to_deletion_requests_the_admin_lands_on_the_users(
    support: Client, support_user: User, world: World
) -> None:
    grant(support_user, "erase_linkeduser")
    for group in support_user.groups.all():
        group.permissions.remove(Permission.objects.get(codename="view_deletionrequest"))
    user_page = reverse("admin:accounts_linkeduser_change", args=[world.user.pk])
    response = support.post(
        action_page(world.user, "delete"), {"ids": world.user.pk, "next": user_page}
    )
    assert response["Location"] == reverse("admin:accounts_linkeduser_changelist")
    page = support.get(response["Location"])
    assert f"User {world.user.user_id} is deleted" in page.text


def test_deactivate_a_device_keeps_its_token_for_the_status_call(
    support: Client, world: World
) -> None:
    page = support.get(action_page(world.phone, "deactivate"))
    assert "Deactivated by support" in page.text
    support.post(action_page(world.phone, "deactivate"), {"ids": world.phone.pk})
    world.phone.refresh_from_db()
    assert not world.phone.is_active
    assert world.phone.inactive_reason == InactiveReason.DEACTIVATED_BY_SUPPORT
    [event] = staff_events(AuditAction.DEVICE_DEACTIVATED, "support")
    assert event.details == {"reason": "DEACTIVATED_BY_SUPPORT"}
    assert event.target_id == world.phone.install_id

    sdk = APIClient()
    sdk.credentials(HTTP_AUTHORIZATION=f"Bearer {world.secrets[5]}")
    status = sdk.get("/sdk/status")
    assert status.status_code == 200
    assert status.json()["device"]["inactive_reason"] == "DEACTIVATED_BY_SUPPORT"


def test_make_active_says_which_device_loses_its_place(
    support: Client, support_user: User, world: World
) -> None:
    grant(support_user, "activate_device")
    newer_phone, _ = device_with_token(user=world.user, install_id="phone-install-0002")
    page = support.get(action_page(newer_phone, "activate"))
    assert "phone-install-0001 (Android phone) loses its place" in page.text
    assert "Replaced by a newer device" in page.text

    support.post(action_page(newer_phone, "activate"), {"ids": newer_phone.pk})
    world.phone.refresh_from_db()
    newer_phone.refresh_from_db()
    assert newer_phone.is_active
    assert world.phone.inactive_reason == InactiveReason.REPLACED_BY_NEWER_DEVICE
    [deactivated] = staff_events(AuditAction.DEVICE_DEACTIVATED, "support")
    assert deactivated.target_id == world.phone.install_id
    assert deactivated.details["replaced_by"] == newer_phone.install_id
    [activated] = staff_events(AuditAction.DEVICE_ACTIVATED, "support")
    assert activated.target_id == newer_phone.install_id


def test_make_active_applies_the_policy_a_tablet_never_replaces_a_phone(
    support: Client, support_user: User, world: World
) -> None:
    grant(support_user, "activate_device")
    page = support.get(action_page(world.tablet, "activate"))
    assert "phones come first: deactivate it first" in page.text
    assert 'type="submit"' not in page.text.split('id="staff-action-consequences"')[1]
    support.post(action_page(world.tablet, "activate"), {"ids": world.tablet.pk})
    world.tablet.refresh_from_db()
    assert not world.tablet.is_active

    support.post(action_page(world.phone, "deactivate"), {"ids": world.phone.pk})
    assert "none loses its place" in support.get(action_page(world.tablet, "activate")).text
    support.post(action_page(world.tablet, "activate"), {"ids": world.tablet.pk})
    world.tablet.refresh_from_db()
    assert world.tablet.is_active
    assert world.tablet.form_factor == FormFactor.TABLET


def test_make_active_takes_one_device_at_a_time(
    support: Client, support_user: User, world: World
) -> None:
    grant(support_user, "activate_device")
    response = support.post(
        reverse("admin:devices_device_changelist"),
        {"action": "activate", "_selected_action": [world.phone.pk, world.tablet.pk]},
        follow=True,
    )
    assert "select at most 1" in response.text


def create_key(client: Client, world: World, **fields: object):
    nonce = client.get(add_key_page()).context["form_nonce"]
    form = {
        "app": world.app.pk,
        "name": "mobile backend",
        "scopes": ["user.link", "user.read"],
        "expires_in_days": 90,
        "form_nonce": nonce,
        **fields,
    }
    return client.post(add_key_page(), form)


def shown_key(response) -> str:
    [key] = response.context["secrets"]
    return key[1]


def test_create_a_key_shows_it_once(key_admin: Client, world: World) -> None:
    response = create_key(key_admin, world)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    full_key = shown_key(response)
    assert full_key in response.text
    key_id, secret = full_key.split(".", 1)
    key = ApiKey.objects.get(key_id=key_id)
    assert crypto.matches(secret, key.secret_digest)
    assert key.scopes == ["user.link", "user.read"]
    [event] = staff_events(AuditAction.KEY_CREATED, "keyadmin")
    assert event.target_id == key_id
    assert secret not in json.dumps(dict(key_admin.session))

    for url in [
        reverse("admin:accounts_apikey_change", args=[key.pk]),
        reverse("admin:accounts_apikey_changelist"),
        reverse("admin:index"),
    ]:
        assert secret not in key_admin.get(url).text


def test_a_resent_key_form_creates_nothing(key_admin: Client, world: World) -> None:
    nonce = key_admin.get(add_key_page()).context["form_nonce"]
    form = {"app": world.app.pk, "name": "x", "scopes": ["user.link"], "expires_in_days": 9}
    first = key_admin.post(add_key_page(), {**form, "form_nonce": nonce})
    again = key_admin.post(add_key_page(), {**form, "form_nonce": nonce}, follow=True)
    assert ApiKey.objects.filter(name="x").count() == 1
    assert "shown once and cannot be shown again" in again.text
    assert shown_key(first) not in again.text


def test_the_key_limit_is_the_services(key_admin: Client, world: World, settings) -> None:
    settings.MAX_ACTIVE_API_KEYS_PER_APP = 1
    response = create_key(key_admin, world)
    assert response.status_code == 200
    assert "already has 1 active keys" in response.text
    assert "secrets" not in response.context


def test_revoke_a_key(key_admin: Client, world: World) -> None:
    assert "401 API_KEY_REVOKED" in key_admin.get(action_page(world.key, "revoke")).text
    key_admin.post(action_page(world.key, "revoke"), {"ids": world.key.pk})
    world.key.refresh_from_db()
    assert world.key.revoked_at is not None
    assert len(staff_events(AuditAction.KEY_REVOKED, "keyadmin")) == 1


def test_rotate_a_key_shows_the_new_one_once(key_admin: Client, world: World) -> None:
    page = key_admin.get(action_page(world.key, "rotate"))
    assert 'name="grace_hours"' in page.text
    response = key_admin.post(
        action_page(world.key, "rotate"), {"ids": world.key.pk, "grace_hours": 2}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    new_id, secret = shown_key(response).split(".", 1)
    new = ApiKey.objects.get(key_id=new_id)
    assert new.rotated_from_id == world.key.pk
    assert crypto.matches(secret, new.secret_digest)
    [rotated] = staff_events(AuditAction.KEY_ROTATED, "keyadmin")
    assert rotated.details["new_key_id"] == new_id
    assert secret not in key_admin.get(reverse("admin:accounts_apikey_changelist")).text

    again = key_admin.post(
        action_page(world.key, "rotate"), {"ids": world.key.pk, "grace_hours": 2}, follow=True
    )
    assert "already rotated" in again.text or "only an active key" in again.text
    assert ApiKey.objects.filter(rotated_from=world.key).count() == 1


@pytest.fixture
def app_editor(support_user: User, support: Client) -> Client:
    grant(support_user, "change_app")
    return support


def app_form(world: World, **fields: str) -> dict[str, str]:
    return {
        "name": world.app.name,
        "is_active": "on",
        "contact_emails": "ops@example.com\nsecond@example.com",
        "sdk_config": '{"tracking": {"interval_s": 60}}',
        **fields,
    }


def test_edit_an_app_through_the_service(app_editor: Client, world: World) -> None:
    url = reverse("admin:accounts_app_change", args=[world.app.pk])
    response = app_editor.post(url, app_form(world))
    assert response.status_code == 302, response.context["adminform"].form.errors
    world.app.refresh_from_db()
    assert world.app.sdk_config == {"tracking": {"interval_s": 60}}
    assert world.app.contact_emails == ["ops@example.com", "second@example.com"]
    [event] = staff_events(AuditAction.APP_UPDATED, "support")
    assert event.details == {"fields": ["contact_emails", "sdk_config"]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sdk_config", "[1, 2]", "Must be a JSON object"),
        ("sdk_config", "{not json", "Enter a valid JSON"),
        ("sdk_config", '{"ratio": NaN}', "The SDK configuration: "),
        ("sdk_config", '{"name": "a\\u0000b"}', "The SDK configuration: "),
        ("sdk_config", '{"big": "' + "x" * 17000 + '"}', "must be at most 16 KB"),
        ("contact_emails", "ops@example.com\nnot-an-address", "Not an e-mail address"),
    ],
)
def test_app_input_is_validated(
    app_editor: Client, world: World, field: str, value: str, message: str
) -> None:
    url = reverse("admin:accounts_app_change", args=[world.app.pk])
    response = app_editor.post(url, app_form(world, **{field: value}))
    assert response.status_code == 200
    assert message in response.text
    assert not AuditEvent.objects.filter(action=AuditAction.APP_UPDATED).exists()


def test_the_app_page_summarises_its_keys(support: Client, world: World) -> None:
    page = support.get(reverse("admin:accounts_app_change", args=[world.app.pk])).text
    assert "1 active, 0 in grace, 0 expired, 0 revoked" in page
    assert world.key.key_id in page


def test_unsafe_next_urls_are_ignored(support: Client, world: World) -> None:
    response = support.post(
        action_page(world.user, "disable"), {"ids": world.user.pk, "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("admin:accounts_linkeduser_changelist")
    assert Device.objects.count() == 2


def test_a_confirmed_action_skips_what_its_check_refuses(key_admin: Client, world: World) -> None:
    """The confirmation POST carries every id; one already revoked meanwhile is reported as
    refused, not as revoked again."""
    ApiKey.objects.filter(pk=world.key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    response = key_admin.post(action_page(world.key, "revoke"), {"ids": world.key.pk}, follow=True)
    texts = [str(message) for message in response.context["messages"]]
    assert texts == [f"{world.key}: key {world.key.key_id} is already revoked"]
    assert not staff_events(AuditAction.KEY_REVOKED, "keyadmin")
