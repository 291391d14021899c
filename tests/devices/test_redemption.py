"""POST /sdk/users: redemption, the activation policy through the API, retries, errors."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from accounts import crypto
from accounts.models import AuthCode, AuthCodeStatus, LinkedUser, UserStatus
from devices.models import Device
from tests.factories import AppFactory, AuthCodeFactory, DeviceFactory, LinkedUserFactory
from tests.helpers import issue_code, redeem

pytestmark = pytest.mark.django_db


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["errorCode"] == code


def test_first_redemption_activates_the_device_and_the_user(customer, api, app):
    issued = issue_code(customer, "alice")
    response = redeem(api, issued["authentication_code"], app.app_id, "install-phone-1")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "user_id",
        "restored",
        "device",
        "access_token",
        "access_token_expires_at",
        "config",
    }
    assert body["user_id"] == issued["user_id"]
    assert body["restored"] is False
    assert body["config"] == app.sdk_config
    assert body["device"] == {
        "install_id": "install-phone-1",
        "platform": "android",
        "form_factor": "phone",
        "model": "Pixel 9",
        "os_version": "15",
        "app_version": "4.2.0",
        "sdk_version": "2.3.0",
        "active": True,
        "inactive_reason": None,
        "activated_at": body["device"]["activated_at"],
        "deactivated_at": None,
        "last_seen_at": body["device"]["last_seen_at"],
    }
    assert body["device"]["activated_at"].endswith("Z")

    user = LinkedUser.objects.get(user_id=issued["user_id"])
    assert user.status == UserStatus.ACTIVE
    device = Device.objects.get()
    assert device.access_token_digest == crypto.digest(body["access_token"])
    code = AuthCode.objects.get()
    assert (code.status, code.redeemed_install_id) == (AuthCodeStatus.REDEEMED, "install-phone-1")
    assert code.redeemed_at is not None


def test_optional_device_fields_may_be_left_out(customer, api, app):
    issued = issue_code(customer, "alice")
    response = api.post(
        "/sdk/users",
        {
            "authentication_code": issued["authentication_code"],
            "app_id": app.app_id,
            "device": {"install_id": "abcdefgh", "platform": "ios", "form_factor": "tablet"},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["device"]["model"] == ""


def test_restoring_on_a_second_phone_replaces_the_first(customer, api, app):
    redeem(api, issue_code(customer, "alice")["authentication_code"], app.app_id, "phone-one-1")
    second = issue_code(customer, "alice")
    assert second["existing_user"] is True

    response = redeem(api, second["authentication_code"], app.app_id, "phone-two-2")

    assert response.status_code == 201
    assert response.json()["restored"] is True
    assert response.json()["device"]["active"] is True
    old = Device.objects.get(install_id="phone-one-1")
    assert (old.is_active, old.inactive_reason) == (False, "REPLACED_BY_NEWER_DEVICE")
    assert old.deactivated_at is not None


@pytest.mark.parametrize(
    ("first", "second", "first_after", "second_after"),
    [
        ("phone", "phone", ("REPLACED_BY_NEWER_DEVICE",), (None,)),
        ("phone", "tablet", (None,), ("PHONE_PREFERRED",)),
        ("tablet", "phone", ("REPLACED_BY_NEWER_DEVICE",), (None,)),
        ("tablet", "tablet", ("REPLACED_BY_NEWER_DEVICE",), (None,)),
    ],
)
def test_policy_through_the_api(customer, api, app, first, second, first_after, second_after):
    redeem(
        api,
        issue_code(customer, "alice")["authentication_code"],
        app.app_id,
        "first-device",
        form_factor=first,
    )
    response = redeem(
        api,
        issue_code(customer, "alice")["authentication_code"],
        app.app_id,
        "second-device",
        form_factor=second,
    )

    assert response.status_code == 201
    assert response.json()["device"]["inactive_reason"] == second_after[0]
    assert response.json()["device"]["active"] is (second_after[0] is None)
    devices = {d.install_id: d for d in Device.objects.all()}
    assert devices["first-device"].inactive_reason == first_after[0]
    assert devices["first-device"].is_active is (first_after[0] is None)
    assert Device.objects.filter(is_active=True).count() == 1


def test_a_waiting_tablet_takes_over_once_the_phone_is_gone(customer, api, app):
    redeem(api, issue_code(customer, "alice")["authentication_code"], app.app_id, "the-phone")
    redeem(
        api,
        issue_code(customer, "alice")["authentication_code"],
        app.app_id,
        "the-tablet",
        form_factor="tablet",
    )
    Device.objects.filter(install_id="the-phone").update(is_active=False, inactive_reason="RESET")

    response = redeem(
        api,
        issue_code(customer, "alice")["authentication_code"],
        app.app_id,
        "the-tablet",
        form_factor="tablet",
    )

    assert response.status_code == 201
    assert response.json()["device"]["active"] is True
    assert Device.objects.count() == 2


def test_the_same_install_retrying_gets_200_and_a_fresh_token(customer, api, app):
    code = issue_code(customer, "alice")["authentication_code"]
    first = redeem(api, code, app.app_id, "install-phone-1").json()

    retry = redeem(api, code, app.app_id, "install-phone-1")

    assert retry.status_code == 200
    assert retry.json()["user_id"] == first["user_id"]
    assert retry.json()["access_token"] != first["access_token"]
    device = Device.objects.get()
    assert device.access_token_digest == crypto.digest(retry.json()["access_token"])
    assert Device.objects.count() == 1


def test_another_install_reusing_a_code_is_refused(customer, api, app):
    code = issue_code(customer, "alice")["authentication_code"]
    redeem(api, code, app.app_id, "install-phone-1")
    _error(redeem(api, code, app.app_id, "install-phone-2"), 409, "AUTH_CODE_ALREADY_USED")
    assert not Device.objects.filter(install_id="install-phone-2").exists()


def test_a_retry_after_the_code_expired_is_refused(customer, api, app):
    code = issue_code(customer, "alice")["authentication_code"]
    redeem(api, code, app.app_id, "install-phone-1")
    AuthCode.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    _error(redeem(api, code, app.app_id, "install-phone-1"), 409, "AUTH_CODE_ALREADY_USED")


def test_an_expired_code_answers_410(api, app):
    code = AuthCodeFactory(user__app=app, expires_at=timezone.now() - dt.timedelta(seconds=1))
    _error(redeem(api, code.code, app.app_id), 410, "AUTH_CODE_EXPIRED")
    assert Device.objects.count() == 0


def test_an_unknown_code_answers_invalid(api, app):
    _error(redeem(api, crypto.new_secret(), app.app_id), 400, "INVALID_AUTH_CODE")


def test_a_code_of_another_app_is_invalid(api, app):
    code = AuthCodeFactory(user__app=AppFactory())
    _error(redeem(api, code.code, app.app_id), 400, "INVALID_AUTH_CODE")
    assert AuthCode.objects.get().status == AuthCodeStatus.ISSUED


def test_an_install_id_of_another_user_conflicts(api, app):
    DeviceFactory(user__app=app, install_id="shared-install")
    code = AuthCodeFactory(user__app=app)

    _error(redeem(api, code.code, app.app_id, "shared-install"), 409, "INSTALL_ID_CONFLICT")

    code.refresh_from_db()
    assert code.status == AuthCodeStatus.ISSUED  # refused atomically: the code is still usable


def test_the_same_install_id_in_another_app_is_another_device(api, app):
    DeviceFactory(install_id="shared-install")
    code = AuthCodeFactory(user__app=app)
    assert redeem(api, code.code, app.app_id, "shared-install").status_code == 201


def test_an_install_of_a_deleted_user_is_free_again(api, app):
    DeviceFactory(user__app=app, user__status=UserStatus.DELETED, install_id="reinstalled")
    code = AuthCodeFactory(user__app=app)
    response = redeem(api, code.code, app.app_id, "reinstalled")
    assert response.status_code == 201
    assert Device.objects.get(install_id="reinstalled").user == code.user


@pytest.mark.parametrize(
    "user_state", [{"disabled_at": timezone.now()}, {"status": UserStatus.DELETED}]
)
def test_a_disabled_or_deleted_user_cannot_redeem(api, app, user_state):
    code = AuthCodeFactory(user=LinkedUserFactory(app=app, **user_state))
    _error(redeem(api, code.code, app.app_id), 403, "USER_DISABLED")
    assert Device.objects.count() == 0


def test_a_disabled_app_cannot_redeem(api):
    code = AuthCodeFactory(user__app__is_active=False)
    _error(redeem(api, code.code, code.app.app_id), 403, "APP_DISABLED")


def test_the_retry_keeps_a_waiting_tablet_waiting(customer, api, app):
    redeem(api, issue_code(customer, "alice")["authentication_code"], app.app_id, "the-phone")
    code = issue_code(customer, "alice")["authentication_code"]
    redeem(api, code, app.app_id, "the-tablet", form_factor="tablet")
    retry = redeem(api, code, app.app_id, "the-tablet", form_factor="tablet")
    assert retry.status_code == 200
    assert retry.json()["device"]["inactive_reason"] == "PHONE_PREFERRED"


@pytest.mark.parametrize("crowded", [False, True])
def test_redemption_query_budget(customer, api, app, crowded, django_assert_max_num_queries):
    """Round trips, transaction control included, for a first and a restoring redemption and
    a retry, the same for a user with 100 devices and 100 codes. PostgreSQL: BEGIN, the user
    lock, the read with the code's use, the devices with their audit events, COMMIT; SQLite
    uses the code and writes the audit events in statements of their own."""
    budget = 5 if connection.vendor == "postgresql" else 7
    user = LinkedUserFactory(app=app, external_id="alice")
    if crowded:
        DeviceFactory.create_batch(100, user=user)
        AuthCodeFactory.create_batch(100, user=user)
    first, second = AuthCodeFactory(user=user), AuthCodeFactory(user=user)

    with django_assert_max_num_queries(budget):
        assert redeem(api, first.code, app.app_id, "phone-one-1").status_code == 201
    with django_assert_max_num_queries(budget):
        assert redeem(api, second.code, app.app_id, "phone-two-2").status_code == 201
    with django_assert_max_num_queries(budget):
        assert redeem(api, second.code, app.app_id, "phone-two-2").status_code == 200
