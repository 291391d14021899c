"""Each page of the people's side of the console runs a fixed number of queries, whatever
the number of members, invitations, apps or past failures."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from console.models import Role
from console.services import team
from tests.console.people import code, code_step, enrolled, password_step, signed_in
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

# The password step: the attempt counted before the password is checked (lockout check,
# insert, count), then forgotten once it passed; the sign-in, the session remembered.
PASSWORD_STEP_QUERIES = 21
# The second step, once per sign-in: the attempt counted as above, code check under a row lock,
# a new session key, the verified mark, the session remembered, the account's slips forgotten,
# the audit event (savepoints included).
SECOND_STEP_QUERIES = 30
ENROLMENT_QUERIES = 10  # the first showing makes the pending authenticator


@pytest.mark.parametrize("size", [1, 20])
def test_page_queries_do_not_grow_with_the_data(size: int, django_assert_max_num_queries) -> None:
    owner = MembershipFactory(role=Role.OWNER)
    app = owner.app
    other = MembershipFactory(app=app, role=Role.VIEWER).user
    enrolled(other)
    for index in range(size):
        MembershipFactory(app=app, role=Role.VIEWER)
        MembershipFactory(user=owner.user)  # the owner's other apps
        team.invite(
            app=app, email=f"p{index}@customer.example", role="viewer", actor=Actor.system("t")
        )
        password_step(Client(REMOTE_ADDR=f"192.0.2.{index + 1}"), f"x{index}@c.example", "x")
    client = signed_in(owner.user)
    with django_assert_max_num_queries(6):
        assert client.get(reverse("console:team", args=[app.app_id])).status_code == 200
    with django_assert_max_num_queries(5):
        assert client.get(reverse("console:account")).status_code == 200
    with django_assert_max_num_queries(10):
        assert client.get(reverse("console:account_two_factor")).status_code == 200

    anonymous = Client()
    with django_assert_max_num_queries(0):
        assert anonymous.get(reverse("console:sign_in")).status_code == 200
    with django_assert_max_num_queries(PASSWORD_STEP_QUERIES):
        assert password_step(anonymous, other.email).status_code == 302
    with django_assert_max_num_queries(3):
        assert anonymous.get(reverse("console:second_factor")).status_code == 200
    with django_assert_max_num_queries(SECOND_STEP_QUERIES):
        assert code_step(anonymous, code(enrolled(other))).status_code == 302


def test_the_invitation_and_enrolment_pages(django_assert_max_num_queries) -> None:
    owner = MembershipFactory(role=Role.OWNER)
    new = team.invite(
        app=owner.app, email="n@customer.example", role="viewer", actor=Actor.system("t")
    )
    client = Client()
    client.get(new.url.split("localhost:8000", 1)[1])
    with django_assert_max_num_queries(3):
        assert client.get(reverse("console:invitation_accept")).status_code == 200
    person = MembershipFactory().user
    fresh = Client()
    password_step(fresh, person.email)
    with django_assert_max_num_queries(ENROLMENT_QUERIES):
        assert fresh.get(reverse("console:second_factor")).status_code == 200


def test_the_password_reset_pages(django_assert_max_num_queries) -> None:
    person = MembershipFactory().user
    client = Client()
    with django_assert_max_num_queries(0):
        assert client.get(reverse("console:password_reset")).status_code == 200
    with django_assert_max_num_queries(3):
        response = client.post(reverse("console:password_reset"), {"email": person.email})
        assert response.status_code == 302
    with django_assert_max_num_queries(0):
        assert client.get(reverse("console:password_reset_done")).status_code == 200
