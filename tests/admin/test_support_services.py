"""The device services behind support's actions: deactivation keeps the token so the SDK
can learn why; making a device active applies the activation policy under the user lock."""

from __future__ import annotations

from functools import partial

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, LinkedUser
from devices import services
from devices.models import Device, InactiveReason
from portal.errors import DomainError
from tests.admin.conftest import World, device_with_token
from tests.concurrency import run_together, values
from tests.helpers import issue_code, redeem

STAFF = Actor.staff("support")


def test_deactivate_the_active_device(world: World) -> None:
    assert services.deactivate_device(device=world.phone, actor=STAFF).pk == world.phone.pk
    world.phone.refresh_from_db()
    assert (world.phone.is_active, world.phone.inactive_reason) == (False, "DEACTIVATED_BY_SUPPORT")
    assert world.phone.deactivated_at is not None
    assert world.phone.access_token_digest is not None, "the SDK still reads /sdk/status"
    [event] = AuditEvent.objects.filter(action=AuditAction.DEVICE_DEACTIVATED)
    assert (event.actor_type, event.actor, event.user_ref) == (
        "staff",
        "support",
        world.user.user_id,
    )


def test_deactivating_an_inactive_device_is_refused_and_changes_nothing(world: World) -> None:
    with pytest.raises(DomainError, match="not active"):
        services.deactivate_device(device=world.tablet, actor=STAFF)
    world.tablet.refresh_from_db()
    assert world.tablet.inactive_reason == InactiveReason.PHONE_PREFERRED
    assert not AuditEvent.objects.filter(action=AuditAction.DEVICE_DEACTIVATED).exists()


def test_a_deleted_users_devices_are_left_alone(world: World) -> None:
    account_services.request_user_deletion(user=world.user, actor=STAFF)
    with pytest.raises(DomainError, match="deleted"):
        services.deactivate_device(device=world.phone, actor=STAFF)
    with pytest.raises(DomainError, match="deleted"):
        services.activate_device(device=world.tablet, actor=STAFF)


def test_make_a_newer_phone_active(world: World) -> None:
    other, _ = device_with_token(user=world.user, install_id="phone-install-0002")
    activation = services.activate_device(device=other, actor=STAFF)
    assert activation.replaced.pk == world.phone.pk
    other.refresh_from_db()
    assert other.is_active and other.activated_at is not None
    assert activation.device == other
    world.phone.refresh_from_db()
    assert world.phone.inactive_reason == InactiveReason.REPLACED_BY_NEWER_DEVICE
    assert Device.objects.filter(user=world.user, is_active=True).get() == other
    actions = list(AuditEvent.objects.values_list("action", "target_id", "actor"))
    assert (AuditAction.DEVICE_ACTIVATED, other.install_id, "support") in actions
    assert (AuditAction.DEVICE_DEACTIVATED, world.phone.install_id, "support") in actions


def test_a_tablet_never_takes_the_place_of_an_active_phone(world: World) -> None:
    with pytest.raises(DomainError, match="phones come first"):
        services.activate_device(device=world.tablet, actor=STAFF)
    services.deactivate_device(device=world.phone, actor=STAFF)
    assert services.activate_device(device=world.tablet, actor=STAFF).replaced is None
    world.tablet.refresh_from_db()
    assert world.tablet.is_active


def test_a_device_without_a_token_cannot_become_active(world: World) -> None:
    reset, _ = device_with_token(user=world.user, install_id="reset-install-01")
    Device.objects.filter(pk=reset.pk).update(access_token_digest=None)
    with pytest.raises(DomainError, match="no access token"):
        services.activate_device(device=reset, actor=STAFF)


def test_making_the_active_device_active_is_refused_and_changes_nothing(world: World) -> None:
    with pytest.raises(DomainError, match="already active"):
        services.activate_device(device=world.phone, actor=STAFF)
    assert not AuditEvent.objects.filter(action=AuditAction.DEVICE_ACTIVATED).exists()


def _deactivated(device: Device) -> bool:
    """Support's deactivation: False when it found the device no longer active."""
    try:
        services.deactivate_device(device=device, actor=STAFF)
    except DomainError as exc:
        assert "not active" in exc.message
        return False
    return True


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_support_and_a_redemption_racing_leave_one_active_device(customer, api, app) -> None:
    """Both take the user lock: whichever goes first, the other sees its result, and the
    user ends with exactly one active device, never an IntegrityError."""
    for round_ in range(5):
        external_id = f"support-race-{round_}"
        first = issue_code(customer, external_id)
        old = redeem(api, first["authentication_code"], app.app_id, f"old-phone-{round_}")
        assert old.status_code == 201, old.content
        waiting = redeem(
            api,
            issue_code(customer, external_id)["authentication_code"],
            app.app_id,
            f"tablet-{round_}",
            form_factor="tablet",
        )
        assert waiting.json()["device"]["inactive_reason"] == "PHONE_PREFERRED"
        second = issue_code(customer, external_id)
        old_phone = Device.objects.get(install_id=f"old-phone-{round_}")
        client, new_install = APIClient(), f"new-phone-{round_}"

        answers = values(
            run_together(
                [
                    partial(_deactivated, old_phone),
                    partial(redeem, client, second["authentication_code"], app.app_id, new_install),
                ]
            )
        )

        assert answers[1].status_code == 201, answers[1].content
        user = LinkedUser.objects.get(user_id=first["user_id"])
        active = Device.objects.filter(user=user, is_active=True)
        assert [d.install_id for d in active] == [new_install]
        old_phone.refresh_from_db()
        expected = "DEACTIVATED_BY_SUPPORT" if answers[0] else "REPLACED_BY_NEWER_DEVICE"
        assert old_phone.inactive_reason == expected
