"""Device-side races found in review, with real threads on the real PostgreSQL; and the SDK's
token calls on a disabled app.

Each race runs twice over: "forced" rounds hold one side at the exact point of the race
(between the redemption's read and its write) while the other side runs, so the interleaving
the review found happens every time; "free" rounds just release both sides together, so the
other orders are covered too. Either way the outcome must be the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from accounts import crypto
from accounts.models import App
from devices import services
from devices.models import Device, InactiveReason
from tests.concurrency import run_together, values
from tests.helpers import issue_code, redeem

WAIT = 10.0  # seconds a held side waits for the other before the test gives up
FORCED_ROUNDS = 4
FREE_ROUNDS = 20


def _sdk(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _wait(event: threading.Event, what: str) -> None:
    if not event.wait(WAIT):
        raise AssertionError(f"gave up waiting for {what}")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("interleaving", ["forced", "free"])
def test_token_refresh_racing_a_redemption_that_replaces_the_refreshing_device(
    customer, api, app, monkeypatch, interleaving
):
    """Guards: the redemption's device upsert wrote back the replaced device's whole row as
    read, token digest included. A refresh by that device committing between the redemption's
    read and its write was undone: the new token T1 answered 401 while the old one, T0, which
    the SDK had already thrown away, kept working. Now a device that only loses its place keeps
    its own token; whatever the order, T1 works (the SDK learns it was replaced) and T0 is
    void."""
    gate: dict[str, threading.Event] = {}
    save_devices = services._save_devices

    def held_save_devices(*args, **kwargs):
        # Runs in the redemption's thread, user lock held, devices read, nothing written yet.
        if "read" in gate:
            gate["read"].set()
            _wait(gate["refreshed"], "the refresh")
        return save_devices(*args, **kwargs)

    monkeypatch.setattr(services, "_save_devices", held_save_devices)
    rounds = FORCED_ROUNDS if interleaving == "forced" else FREE_ROUNDS
    for round_ in range(rounds):
        external_id = f"refresh-race-{interleaving}-{round_}"
        first = issue_code(customer, external_id)
        old_install, new_install = f"phone-a-{round_:02d}", f"phone-b-{round_:02d}"
        old = redeem(api, first["authentication_code"], app.app_id, old_install)
        assert old.status_code == 201, old.content
        t0 = old.json()["access_token"]
        second = issue_code(customer, external_id)
        refresher, redeemer = _sdk(t0), APIClient()

        def refresh(refresher=refresher) -> object:
            if "read" in gate:
                _wait(gate["read"], "the redemption's read")
            try:
                return refresher.post("/sdk/token")
            finally:
                if "refreshed" in gate:
                    gate["refreshed"].set()

        def redemption(redeemer=redeemer, code=second["authentication_code"], install=new_install):
            return redeem(redeemer, code, app.app_id, install)

        if interleaving == "forced":
            gate.update(read=threading.Event(), refreshed=threading.Event())
        try:
            refreshed, redeemed = values(run_together([refresh, redemption]))
        finally:
            gate.clear()

        assert refreshed.status_code == 200, refreshed.content
        assert redeemed.status_code == 201, redeemed.content
        assert redeemed.json()["device"]["active"] is True
        t1 = refreshed.json()["access_token"]
        status = _sdk(t1).get("/sdk/status")
        assert status.status_code == 200, (round_, status.content)
        shown = status.json()["device"]
        assert (shown["install_id"], shown["active"], shown["inactive_reason"]) == (
            old_install,
            False,
            "REPLACED_BY_NEWER_DEVICE",
        )
        gone = _sdk(t0).get("/sdk/status")
        assert (gone.status_code, gone.json()["errorCode"]) == (401, "INVALID_ACCESS_TOKEN")
        device = Device.objects.get(app=app, install_id=old_install)
        assert device.access_token_digest == crypto.digest(t1)
        assert (device.is_active, device.inactive_reason) == (
            False,
            InactiveReason.REPLACED_BY_NEWER_DEVICE,
        )
        assert Device.objects.get(app=app, install_id=new_install).is_active


TOKEN_CALLS: dict[str, Callable[[APIClient], object]] = {
    "GET /sdk/status": lambda client: client.get("/sdk/status"),
    "POST /sdk/token": lambda client: client.post("/sdk/token"),
    "POST /sdk/reset": lambda client: client.post("/sdk/reset"),
}


@pytest.mark.django_db
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
