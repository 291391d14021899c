"""GET /sdk/status, POST /sdk/token, POST /sdk/reset with access tokens."""

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import App
from devices.models import Device
from tests.helpers import issue_code, redeem

pytestmark = pytest.mark.django_db


def _sdk(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _redeemed(customer, app, install_id: str, **device) -> tuple[APIClient, dict]:
    body = redeem(
        APIClient(),
        issue_code(customer, "alice")["authentication_code"],
        app.app_id,
        install_id,
        **device,
    ).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    return client, body


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["errorCode"] == code


def test_status_of_the_active_device(customer, app):
    sdk, redeemed = _redeemed(customer, app, "phone-one-1")
    response = sdk.get("/sdk/status")
    assert response.status_code == 200
    assert response.json() == {
        "user_id": redeemed["user_id"],
        "device": {**redeemed["device"], "last_seen_at": response.json()["device"]["last_seen_at"]},
        "config": app.sdk_config,
    }


def test_a_replaced_device_learns_why(customer, app):
    old, _ = _redeemed(customer, app, "phone-one-1")
    _redeemed(customer, app, "phone-two-2")
    response = old.get("/sdk/status")
    assert response.status_code == 200
    assert response.json()["device"]["active"] is False
    assert response.json()["device"]["inactive_reason"] == "REPLACED_BY_NEWER_DEVICE"


def test_a_waiting_tablet_learns_why(customer, app):
    _redeemed(customer, app, "phone-one-1")
    tablet, _ = _redeemed(customer, app, "tablet-one-1", form_factor="tablet")
    assert tablet.get("/sdk/status").json()["device"]["inactive_reason"] == "PHONE_PREFERRED"


def test_status_config_follows_the_app(customer, app):
    sdk, _ = _redeemed(customer, app, "phone-one-1")
    app.sdk_config = {"tracking": {"interval_s": 5}}
    app.save()
    assert sdk.get("/sdk/status").json()["config"] == {"tracking": {"interval_s": 5}}


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer nonsense", "Basic abc", "Bearer " + "x" * 500]
)
def test_unknown_tokens_are_refused(api, header):
    if header:
        api.credentials(HTTP_AUTHORIZATION=header)
    for response in (api.get("/sdk/status"), api.post("/sdk/token"), api.post("/sdk/reset")):
        _error(response, 401, "INVALID_ACCESS_TOKEN")
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_is_refused(customer, app):
    sdk, _ = _redeemed(customer, app, "phone-one-1")
    Device.objects.update(access_token_expires_at=timezone.now() - dt.timedelta(seconds=1))
    _error(sdk.get("/sdk/status"), 401, "INVALID_ACCESS_TOKEN")


def test_token_lifetime_comes_from_the_setting(customer, app, settings):
    settings.ACCESS_TOKEN_TTL_SECONDS = 60
    _, body = _redeemed(customer, app, "phone-one-1")
    expires = dt.datetime.fromisoformat(body["access_token_expires_at"])
    assert expires <= timezone.now() + dt.timedelta(seconds=60)
    assert expires > timezone.now() + dt.timedelta(seconds=55)


def test_refresh_voids_the_old_token(customer, app):
    sdk, _ = _redeemed(customer, app, "phone-one-1")
    response = sdk.post("/sdk/token")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "access_token_expires_at"}

    _error(sdk.get("/sdk/status"), 401, "INVALID_ACCESS_TOKEN")
    _error(sdk.post("/sdk/token"), 401, "INVALID_ACCESS_TOKEN")
    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert fresh.get("/sdk/status").status_code == 200


def test_reset_deactivates_only_this_device(customer, app):
    phone, _ = _redeemed(customer, app, "phone-one-1")
    tablet, _ = _redeemed(customer, app, "tablet-one-1", form_factor="tablet")

    response = phone.post("/sdk/reset")

    assert response.status_code == 204
    assert response.content == b""
    _error(phone.get("/sdk/status"), 401, "INVALID_ACCESS_TOKEN")
    reset = Device.objects.get(install_id="phone-one-1")
    assert (reset.is_active, reset.inactive_reason) == (False, "RESET")
    assert reset.deactivated_at is not None
    assert reset.access_token_digest is None
    # The user and the other device are untouched.
    waiting = tablet.get("/sdk/status").json()
    assert waiting["device"]["inactive_reason"] == "PHONE_PREFERRED"
    assert customer.get(f"/users/{waiting['user_id']}").json()["status"] == "active"


def test_disabling_a_user_stops_tokens_and_redemption_until_enabled(customer, app):
    sdk, _ = _redeemed(customer, app, "phone-one-1")
    user = Device.objects.get().user
    code = issue_code(customer, "alice")["authentication_code"]

    account_services.set_user_disabled(user=user, disabled=True, actor=Actor.staff("support"))
    _error(sdk.get("/sdk/status"), 403, "USER_DISABLED")
    _error(sdk.post("/sdk/token"), 403, "USER_DISABLED")
    _error(redeem(APIClient(), code, app.app_id, "phone-two-2"), 403, "USER_DISABLED")

    account_services.set_user_disabled(user=user, disabled=False, actor=Actor.staff("support"))
    assert sdk.get("/sdk/status").status_code == 200
    assert redeem(APIClient(), code, app.app_id, "phone-two-2").status_code == 201


def test_status_query_budget(customer, app, django_assert_max_num_queries):
    sdk, _ = _redeemed(customer, app, "phone-one-1")
    Device.objects.update(last_seen_at=timezone.now() - dt.timedelta(hours=1))
    with django_assert_max_num_queries(2):  # token lookup + last_seen_at (once a minute)
        assert sdk.get("/sdk/status").status_code == 200
    with django_assert_max_num_queries(1):
        assert sdk.get("/sdk/status").status_code == 200


TOKEN_CALLS: dict[str, Callable[[APIClient], object]] = {
    "GET /sdk/status": lambda client: client.get("/sdk/status"),
    "POST /sdk/token": lambda client: client.post("/sdk/token"),
    "POST /sdk/reset": lambda client: client.post("/sdk/reset"),
}


def test_token_calls_answer_app_disabled_while_the_app_is_disabled(customer, api, app):
    """The access token is checked first (a disabled app's device still holds a valid one),
    then the app: 403 APP_DISABLED on every token call, and nothing changes meanwhile, so once
    the app is enabled again the same token works and the device is still active."""
    issued = issue_code(customer, "disabled-app-user")
    redeemed = redeem(api, issued["authentication_code"], app.app_id, "disabled-app-phone")
    assert redeemed.status_code == 201, redeemed.content
    token = redeemed.json()["access_token"]
    App.objects.filter(pk=app.pk).update(is_active=False)

    for name, call in TOKEN_CALLS.items():
        response = call(_sdk(token))
        assert response.status_code == 403, (name, response.content)
        assert response.json()["errorCode"] == "APP_DISABLED", name

    App.objects.filter(pk=app.pk).update(is_active=True)
    status = _sdk(token).get("/sdk/status")
    assert status.status_code == 200, status.content
    assert (status.json()["device"]["active"], status.json()["device"]["inactive_reason"]) == (
        True,
        None,
    )
