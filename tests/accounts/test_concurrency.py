"""Races on issuance and deletion, with real threads on the real PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from rest_framework.test import APIClient

from accounts import crypto, services
from accounts.models import (
    AuthCode,
    AuthCodeStatus,
    DeletionRequest,
    DeletionStatus,
    LinkedUser,
    UserStatus,
)
from devices.models import Device, InactiveReason
from tests.concurrency import run_together, values
from tests.helpers import issue_code, redeem

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20
ROUNDS = 3
REDEMPTIONS = 10
DELETION_ROUNDS = 5


def _issuance(api_key, external_id: str) -> Callable:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    return lambda: client.post("/users/auth-code", {"external_id": external_id}, format="json")


def _answers(responses) -> list[tuple[int, str]]:
    return [
        (response.status_code, response.json().get("errorCode", "") if response.content else "")
        for response in responses
    ]


def test_twenty_first_issuances_for_one_external_id_create_one_user(api_key, app):
    for round_ in range(ROUNDS):
        external_id = f"brand-new-{round_}"
        responses = values(run_together([_issuance(api_key, external_id) for _ in range(THREADS)]))

        assert _answers(responses) == [(200, "")] * THREADS
        bodies = [response.json() for response in responses]
        assert len({body["user_id"] for body in bodies}) == 1
        assert sorted(body["existing_user"] for body in bodies) == [False] + [True] * (THREADS - 1)
        user = LinkedUser.objects.get(app=app, external_id=external_id)
        assert user.user_id == bodies[0]["user_id"]
        assert user.status == UserStatus.PENDING
        # Every answer's code is a live code of that one user.
        assert len({body["authentication_code"] for body in bodies}) == THREADS
        assert AuthCode.objects.filter(user=user, status=AuthCodeStatus.ISSUED).count() == THREADS
    assert LinkedUser.objects.filter(app=app).count() == ROUNDS


def _user_with_codes(customer, api, app, external_id: str) -> tuple[str, list[str]]:
    """A user with an active phone and REDEMPTIONS outstanding codes."""
    first = issue_code(customer, external_id)
    phone = redeem(api, first["authentication_code"], app.app_id, f"{external_id}-phone")
    assert phone.status_code == 201, phone.content
    codes = [issue_code(customer, external_id)["authentication_code"] for _ in range(REDEMPTIONS)]
    return first["user_id"], codes


def _deletion_race(
    customer, app, user_id: str, codes: list[str], prefix: str, form_factor: str = "phone"
):
    """One DELETE /users/{id} and REDEMPTIONS redemptions on new installs, all at once."""
    installs = [f"{prefix}-new-{n:02d}" for n in range(REDEMPTIONS)]
    redeemers = [APIClient() for _ in installs]
    calls: list[Callable] = [lambda: customer.delete(f"/users/{user_id}")]
    calls += [
        lambda client=client, code=code, install=install: redeem(
            client, code, app.app_id, install, form_factor=form_factor
        )
        for client, code, install in zip(redeemers, codes, installs, strict=True)
    ]
    deletion, *redemptions = values(run_together(calls))
    assert deletion.status_code == 202, deletion.content
    return deletion.json()["request_id"], redemptions, installs


def _assert_tokens_void(redemptions) -> None:
    for response in redemptions:
        if response.status_code == 201:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access_token']}")
            answer = client.get("/sdk/status")
            assert answer.status_code == 401, answer.content
            assert answer.json()["errorCode"] == "INVALID_ACCESS_TOKEN"


@pytest.mark.parametrize("form_factor", ["phone", "tablet"])
def test_deletion_racing_redemptions_leaves_no_usable_device(
    customer, api, app, monkeypatch, form_factor
):
    """The purge is held back, so the deleted user's rows stay to be inspected.

    Deletion and redemption both lock the user row, so each redemption falls wholly before
    the deletion (its device is then retired with the others) or wholly after it (refused).
    A redemption slipping past the lock would commit a device after the retirement: it would
    stay active (a phone) or PHONE_PREFERRED (a tablet) with a working token. Tablets do not
    touch each other's rows, so there only the deletion's lock orders them."""
    held: list[str] = []
    monkeypatch.setattr("accounts.tasks.purge_deleted_user", SimpleNamespace(delay=held.append))
    for round_ in range(DELETION_ROUNDS):
        external_id = f"deleted-{round_}"
        user_id, codes = _user_with_codes(customer, api, app, external_id)

        request_id, redemptions, installs = _deletion_race(
            customer, app, user_id, codes, external_id, form_factor
        )

        answers = _answers(redemptions)
        assert set(answers) <= {(201, ""), (403, "USER_DISABLED")}, answers
        won = [r.json()["device"]["install_id"] for r in redemptions if r.status_code == 201]
        user = LinkedUser.objects.get(user_id=user_id)
        assert user.status == UserStatus.DELETED
        deletion = DeletionRequest.objects.get(request_id=request_id)
        assert (deletion.status, deletion.user_id) == (DeletionStatus.PENDING, user.pk)
        assert held[-1] == request_id

        devices = Device.objects.filter(user=user)
        assert sorted(devices.values_list("install_id", flat=True)) == sorted(
            [f"{external_id}-phone", *won]
        )
        assert set(devices.values_list("is_active", "inactive_reason", "access_token_digest")) == {
            (False, InactiveReason.USER_DELETED, None)
        }
        assert not Device.objects.filter(install_id__in=set(installs) - set(won)).exists()
        codes_left = Counter(AuthCode.objects.filter(user=user).values_list("status", flat=True))
        # The first code (the phone's) and each winner's were redeemed; every other one voided.
        assert codes_left == Counter(
            {AuthCodeStatus.REDEEMED: 1 + len(won), AuthCodeStatus.VOID: REDEMPTIONS - len(won)}
        )
        _assert_tokens_void(redemptions)

        assert services.purge_deleted_user(request_id=request_id)
        assert not LinkedUser.objects.filter(user_id=user_id).exists()
        assert not Device.objects.filter(app=app).exists()


def test_deletion_racing_redemptions_with_the_purge_running(customer, api, app):
    """Nothing held back: the eager purge runs as soon as the deletion commits. A redemption
    after the deletion is refused (403), or finds its code already purged (400); one that
    slipped past the lock would fail on the purged user (an IntegrityError from its thread)
    or leave a device behind."""
    for round_ in range(DELETION_ROUNDS):
        external_id = f"purged-{round_}"
        user_id, codes = _user_with_codes(customer, api, app, external_id)

        request_id, redemptions, installs = _deletion_race(
            customer, app, user_id, codes, external_id
        )

        answers = _answers(redemptions)
        assert set(answers) <= {(201, ""), (403, "USER_DISABLED"), (400, "INVALID_AUTH_CODE")}, (
            answers
        )
        deletion = DeletionRequest.objects.get(request_id=request_id)
        assert (deletion.status, deletion.user_id) == (DeletionStatus.DONE, None)
        assert not LinkedUser.objects.filter(user_id=user_id).exists()
        assert not Device.objects.filter(install_id__in=[f"{external_id}-phone", *installs])
        assert not AuthCode.objects.filter(code_digest__in=[crypto.digest(c) for c in codes])
        _assert_tokens_void(redemptions)
        # The external id is free again, for a brand-new user.
        again = issue_code(customer, external_id)
        assert (again["existing_user"], again["user_id"] != user_id) == (False, True)
