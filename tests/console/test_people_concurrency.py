"""Single use under concurrency, on the real PostgreSQL: one recovery code, one authenticator
code or one invitation link used by two requests at the same instant works for one of them."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from console.models import Invitation, Membership
from console.services import team, two_factor
from console.views import people as people_views
from portal.errors import DomainError
from tests.concurrency import run_together, values
from tests.console.people import code, enrolled
from tests.factories import AppFactory, MembershipFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_one_recovery_code_used_twice_at_once_works_once() -> None:
    person = MembershipFactory().user
    [recovery, *_] = two_factor.regenerate_recovery_codes(user=person)
    used = values(
        run_together([lambda: two_factor.use_recovery_code(user=person, code=recovery)] * 2)
    )
    assert sorted(used) == [False, True]


def test_one_authenticator_code_used_twice_at_once_works_once() -> None:
    person = MembershipFactory().user
    now = code(enrolled(person))
    accepted = values(run_together([lambda: two_factor.verify_code(user=person, code=now)] * 2))
    assert sum(device is not None for device in accepted) == 1


def test_one_invitation_accepted_twice_at_once_makes_one_account() -> None:
    new = team.invite(
        app=AppFactory(), email="n@customer.example", role="viewer", actor=Actor.system("t")
    )
    password = "a long console passphrase"
    outcomes = run_together(
        [lambda: team.accept_with_new_account(invitation=new.invitation, password=password)] * 2
    )
    assert sum(o.error is None for o in outcomes) == 1
    assert all(isinstance(o.error, DomainError) for o in outcomes if o.error is not None)
    assert Membership.objects.filter(user__username="n@customer.example").count() == 1


@pytest.mark.parametrize("same", ["account", "address"])
def test_guesses_sent_at_once_are_checked_no_more_than_the_limit_allows(same: str) -> None:
    """Ten wrong passwords at the same instant (for one account from ten addresses, or for ten
    accounts from one address): the limit bounds how many are checked, not only how many are
    counted once the slow password checks are done."""
    person = MembershipFactory().user
    checked = []
    real = people_views._person_with_password

    def slow_check(email: str, password: str):
        checked.append(email)
        time.sleep(0.2)  # a real password hash takes about this long
        return real(email, password)

    def guess(index: int) -> int:
        address = "192.0.2.1" if same == "address" else f"192.0.2.{index + 1}"
        email = person.email if same == "account" else f"p{index}@customer.example"
        response = Client(REMOTE_ADDR=address).post(
            reverse("console:sign_in"), {"email": email, "password": f"guess {index}"}
        )
        return response.status_code

    with mock.patch.object(people_views, "_person_with_password", slow_check):
        statuses = values(run_together([lambda i=i: guess(i) for i in range(10)]))
    assert len(checked) <= settings.CONSOLE_SIGN_IN_FAILURE_LIMIT
    assert set(statuses) <= {200, 429}  # each one checked and refused, or locked out unchecked
    assert statuses.count(200) < settings.CONSOLE_SIGN_IN_FAILURE_LIMIT


def test_two_invitations_to_one_app_accepted_at_once_make_one_membership() -> None:
    """Two owners invited the same person; both links accepted at the same instant: one joins,
    the other is told so (a refusal, not a database error), its invitation left unspent."""
    app = AppFactory()
    person = MembershipFactory().user
    links = [
        team.invite(app=app, email=person.email, role="viewer", actor=Actor.system("t"))
        for _ in range(2)
    ]
    outcomes = run_together(
        [lambda new=new: team.accept_as(invitation=new.invitation, user=person) for new in links]
    )
    assert sum(o.error is None for o in outcomes) == 1
    assert all(isinstance(o.error, DomainError) for o in outcomes if o.error is not None)
    assert Membership.objects.filter(app=app, user=person).count() == 1
    assert Invitation.objects.filter(app=app, accepted_at__isnull=True).count() == 1
