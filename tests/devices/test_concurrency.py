"""Races on redemption, reset and token refresh, with real threads on the real PostgreSQL.

The threads are released together: a missing lock or a read-then-write shows as a second use
of a code, a second active device (an IntegrityError on the partial unique constraint, raised
here from the thread), or a reason overwritten by the loser of the race. Twenty requests on one
code or one user collide within one round, so one round proves those (a redemption that read
before taking the user lock failed every single round). Where a race needs a precise
interleaving, "forced" rounds hold one side at the exact point of the race (between the
redemption's read and its write) while the other side runs, so it happens every time and one
round proves it; "free" rounds release both sides together, so the other orders are covered too.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts import crypto
from accounts.models import AuthCode, AuthCodeStatus, LinkedUser, UserStatus
from devices import services
from devices.models import Device, FormFactor, InactiveReason
from tests.concurrency import backend_pid, run_together, values, waiting_for
from tests.helpers import issue_code, redeem

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20
ROUNDS = 1  # twenty threads on one lock collide within a round
WAIT = 10.0  # seconds a held side waits for the other before the test gives up
FORCED_ROUNDS = 1  # a forced interleaving happens every time: one round proves it
FREE_ROUNDS = 5
RESET_ROUNDS, RESET_USERS = 2, 5  # free rounds of the reset race, with this many users each


def _sdk(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _wait(event: threading.Event, what: str) -> None:
    if not event.wait(WAIT):
        raise AssertionError(f"gave up waiting for {what}")


def _redemption(code: str, app_id: str, install_id: str, form_factor: str = "phone") -> Callable:
    client = APIClient()
    return lambda: redeem(client, code, app_id, install_id, form_factor=form_factor)


def _reset(access_token: str) -> Callable:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token}")
    return lambda: client.post("/sdk/reset")


def _answers(responses) -> list[tuple[int, str]]:
    """(status, errorCode or "") of each answer, for assertions and their messages."""
    return [
        (response.status_code, response.json().get("errorCode", "") if response.content else "")
        for response in responses
    ]


def test_one_code_redeemed_by_twenty_installs_at_once_is_used_once(customer, app):
    for round_ in range(ROUNDS):
        issued = issue_code(customer, f"one-code-{round_}")
        installs = [f"install-one-{round_}-{n:02d}" for n in range(THREADS)]

        responses = values(
            run_together(
                [_redemption(issued["authentication_code"], app.app_id, i) for i in installs]
            )
        )

        answers = _answers(responses)
        assert Counter(answers) == {
            (201, ""): 1,
            (409, "AUTH_CODE_ALREADY_USED"): THREADS - 1,
        }, answers
        winner = next(response.json() for response in responses if response.status_code == 201)
        assert winner["user_id"] == issued["user_id"]
        user = LinkedUser.objects.get(user_id=issued["user_id"])
        assert user.status == UserStatus.ACTIVE
        device = Device.objects.get(user=user)
        assert device.install_id == winner["device"]["install_id"]
        assert device.is_active
        assert Device.objects.filter(install_id__in=installs).count() == 1
        code = AuthCode.objects.get(user=user)
        assert (code.status, code.redeemed_install_id) == (
            AuthCodeStatus.REDEEMED,
            device.install_id,
        )


def test_twenty_phones_of_one_user_redeeming_at_once_leave_exactly_one_active(customer, app):
    for round_ in range(ROUNDS):
        issued = [issue_code(customer, f"many-phones-{round_}") for _ in range(THREADS)]
        user_id = issued[0]["user_id"]
        installs = [f"install-phone-{round_}-{n:02d}" for n in range(THREADS)]

        responses = values(
            run_together(
                [
                    _redemption(code["authentication_code"], app.app_id, install)
                    for code, install in zip(issued, installs, strict=True)
                ]
            )
        )

        assert _answers(responses) == [(201, "")] * THREADS
        bodies = [response.json() for response in responses]
        assert {body["user_id"] for body in bodies} == {user_id}
        # Serialised on the user row: each phone was the newest at its turn, and only the
        # first turn found the user without a device.
        assert all(body["device"]["active"] for body in bodies)
        assert sorted(body["restored"] for body in bodies) == [False] + [True] * (THREADS - 1)

        devices = list(Device.objects.filter(user__user_id=user_id))
        assert sorted(device.install_id for device in devices) == installs
        active = [device for device in devices if device.is_active]
        assert len(active) == 1
        assert {device.inactive_reason for device in devices if not device.is_active} == {
            InactiveReason.REPLACED_BY_NEWER_DEVICE
        }
        assert LinkedUser.objects.get(user_id=user_id).status == UserStatus.ACTIVE
        assert not AuthCode.objects.filter(user__user_id=user_id).exclude(
            status=AuthCodeStatus.REDEEMED
        )


def test_phones_and_tablets_of_one_user_redeeming_at_once_leave_one_active_phone(customer, app):
    for round_ in range(ROUNDS):
        issued = [issue_code(customer, f"mixed-{round_}") for _ in range(THREADS)]
        user_id = issued[0]["user_id"]
        installs = [f"install-mixed-{round_}-{n:02d}" for n in range(THREADS)]
        kinds = [FormFactor.PHONE if n % 2 else FormFactor.TABLET for n in range(THREADS)]

        responses = values(
            run_together(
                [
                    _redemption(code["authentication_code"], app.app_id, install, kind)
                    for code, install, kind in zip(issued, installs, kinds, strict=True)
                ]
            )
        )

        assert _answers(responses) == [(201, "")] * THREADS
        devices = list(Device.objects.filter(user__user_id=user_id))
        assert len(devices) == THREADS
        active = [device for device in devices if device.is_active]
        # Whatever the order: a tablet never displaces a phone and a phone always displaces
        # a tablet, so the last phone to take its turn is the one left active.
        assert len(active) == 1
        assert active[0].form_factor == FormFactor.PHONE
        for device in devices:
            if device.is_active:
                continue
            if device.form_factor == FormFactor.PHONE:
                assert device.inactive_reason == InactiveReason.REPLACED_BY_NEWER_DEVICE
            else:
                assert device.inactive_reason in {
                    InactiveReason.REPLACED_BY_NEWER_DEVICE,
                    InactiveReason.PHONE_PREFERRED,
                }


def test_twenty_tablets_redeeming_at_once_leave_the_active_phone_in_place(customer, api, app):
    for round_ in range(ROUNDS):
        external_id = f"phone-first-{round_}"
        first = issue_code(customer, external_id)
        phone_install = f"the-phone-{round_}"
        phone = redeem(api, first["authentication_code"], app.app_id, phone_install)
        assert phone.status_code == 201, phone.content
        issued = [issue_code(customer, external_id) for _ in range(THREADS)]
        tablets = [f"tablet-{round_}-{n:02d}" for n in range(THREADS)]

        responses = values(
            run_together(
                [
                    _redemption(code["authentication_code"], app.app_id, install, "tablet")
                    for code, install in zip(issued, tablets, strict=True)
                ]
            )
        )

        assert _answers(responses) == [(201, "")] * THREADS
        for body in (response.json() for response in responses):
            assert body["restored"] is True
            assert (body["device"]["active"], body["device"]["inactive_reason"]) == (
                False,
                "PHONE_PREFERRED",
            )
        devices = Device.objects.filter(user__user_id=first["user_id"])
        assert [device.install_id for device in devices.filter(is_active=True)] == [phone_install]
        assert set(
            devices.filter(install_id__in=tablets).values_list("is_active", "inactive_reason")
        ) == {(False, InactiveReason.PHONE_PREFERRED)}
        assert devices.count() == THREADS + 1


def test_one_install_id_redeemed_for_ten_users_at_once_is_bound_to_one(customer, app):
    """Different users lock different rows, so nothing serialises these but the uniqueness of
    (app, install_id): the install must end bound to the one winner, the others refused."""
    users = 10
    for round_ in range(ROUNDS):
        issued = [issue_code(customer, f"shared-install-{round_}-{n}") for n in range(users)]
        install = f"shared-install-{round_}"

        responses = values(
            run_together(
                [_redemption(code["authentication_code"], app.app_id, install) for code in issued]
            )
        )

        answers = _answers(responses)
        assert Counter(answers) == {(201, ""): 1, (409, "INSTALL_ID_CONFLICT"): users - 1}, answers
        winner = next(response.json() for response in responses if response.status_code == 201)
        device = Device.objects.select_related("user").get(app=app, install_id=install)
        assert device.user.user_id == winner["user_id"]
        assert device.is_active
        status = APIClient()
        status.credentials(HTTP_AUTHORIZATION=f"Bearer {winner['access_token']}")
        assert status.get("/sdk/status").json()["user_id"] == winner["user_id"]
        losers = [code["user_id"] for code in issued if code["user_id"] != winner["user_id"]]
        # A refusal rolls everything back: the losers' users are still pending, codes unused.
        assert set(
            LinkedUser.objects.filter(user_id__in=losers).values_list("status", flat=True)
        ) == {UserStatus.PENDING}
        assert set(
            AuthCode.objects.filter(user__user_id__in=losers).values_list("status", flat=True)
        ) == {AuthCodeStatus.ISSUED}


@pytest.mark.parametrize("interleaving", ["forced", "free"])
def test_reset_racing_a_redemption_on_another_device_of_the_user(
    customer, api, app, monkeypatch, interleaving
):
    """Both take the user lock. Without it in reset, the redemption could read the device
    as active, the reset commit RESET, and the redemption then overwrite it with
    REPLACED_BY_NEWER_DEVICE: the reset device must end with RESET, whatever the order.

    "forced": the new phone's redemption is held after its read (user lock held, devices read,
    nothing written) until the reset is seen waiting for that lock, or has answered (a reset
    taking no lock): the reset must have waited, and the interleaving above is tried every
    time. "free": several users a round, the two sides of each released together."""
    gate: dict[str, Any] = {}
    save_devices = services._save_devices

    def held_save_devices(*args, **kwargs):
        # Runs in the redemption's thread, user lock held, devices read, nothing written yet.
        if "read" in gate:
            gate["redeemer"] = backend_pid()
            gate["read"].set()
            _wait(gate["go"], "the reset to meet the user lock")
        return save_devices(*args, **kwargs)

    monkeypatch.setattr(services, "_save_devices", held_save_devices)
    forced = interleaving == "forced"
    rounds, users_per_round = (FORCED_ROUNDS, 1) if forced else (RESET_ROUNDS, RESET_USERS)
    for round_ in range(rounds):
        races, calls = [], []
        for n in range(users_per_round):
            external_id = f"reset-race-{interleaving}-{round_}-{n}"
            first = issue_code(customer, external_id)
            old_install = f"old-phone-{round_}-{n}"
            old = redeem(api, first["authentication_code"], app.app_id, old_install)
            assert old.status_code == 201, old.content
            token = old.json()["access_token"]
            second = issue_code(customer, external_id)
            new_install, kind = f"new-device-{round_}-{n}", ("phone", "tablet")[n % 2]
            races.append((first["user_id"], old_install, new_install, token))
            calls += [
                _reset(token),
                _redemption(second["authentication_code"], app.app_id, new_install, kind),
            ]
        if forced:
            gate.update(read=threading.Event(), go=threading.Event(), reset=threading.Event())

            def reset_once_read(call=calls[0]):
                _wait(gate["read"], "the redemption's read")
                try:
                    return call()
                finally:
                    gate["reset"].set()

            def release_the_redemption():
                _wait(gate["read"], "the redemption's read")
                try:
                    return waiting_for(gate["redeemer"], done=gate["reset"], timeout=WAIT)
                finally:
                    gate["go"].set()

            calls = [reset_once_read, calls[1], release_the_redemption]
        try:
            responses = values(run_together(calls))
        finally:
            gate.clear()
        waiter = responses.pop() if forced else None

        for index, (user_id, old_install, new_install, token) in enumerate(races):
            reset, redemption = responses[2 * index], responses[2 * index + 1]
            assert reset.status_code == 204, reset.content
            assert redemption.status_code == 201, redemption.content
            devices = Device.objects.filter(user__user_id=user_id)
            assert devices.filter(is_active=True).count() <= 1
            old = devices.get(install_id=old_install)
            assert (old.is_active, old.inactive_reason, old.access_token_digest) == (
                False,
                InactiveReason.RESET,
                None,
            )
            new = devices.get(install_id=new_install)
            shown = redemption.json()["device"]
            # The reset touches no other device: the new one is as its redemption left it,
            # active unless a tablet found the phone still active.
            assert (new.is_active, new.inactive_reason) == (
                shown["active"],
                shown["inactive_reason"],
            )
            if new.form_factor == FormFactor.PHONE:
                assert new.is_active
            gone = APIClient()
            gone.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
            assert gone.get("/sdk/status").status_code == 401
        if forced:
            assert waiter is not None, "the reset did not wait for the redemption's user lock"


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
