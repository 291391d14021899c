"""The last-owner rule under concurrency, on the real PostgreSQL: two owners demoting (or
removing) each other at the same instant leave the app with exactly one owner."""

from __future__ import annotations

import pytest

from accounts.audit import Actor
from console.models import Membership, Role
from console.services import team
from portal.errors import DomainError
from tests.concurrency import run_together
from tests.factories import AppFactory, MembershipFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def outcomes_of(calls) -> tuple[int, int]:
    results = run_together(calls)
    refused = [r for r in results if isinstance(r.error, DomainError)]
    for r in results:
        if r.error is not None and not isinstance(r.error, DomainError):
            raise r.error
    return len(results) - len(refused), len(refused)


@pytest.mark.parametrize("attempt", range(3))
def test_two_owners_demoting_each_other_at_once_leave_one_owner(attempt: int) -> None:
    app = AppFactory()
    first = MembershipFactory(app=app, role=Role.OWNER)
    second = MembershipFactory(app=app, role=Role.OWNER)

    def demote(membership: Membership, by: Membership):
        return lambda: team.change_role(
            membership=membership, role=Role.DEVELOPER, actor=Actor.console(by.user.email)
        )

    done, refused = outcomes_of([demote(first, second), demote(second, first)])
    assert (done, refused) == (1, 1)
    assert Membership.objects.filter(app=app, role=Role.OWNER).count() == 1


def test_two_owners_leaving_at_once_leave_one_owner() -> None:
    app = AppFactory()
    owners = [MembershipFactory(app=app, role=Role.OWNER) for _ in range(2)]
    MembershipFactory(app=app, role=Role.VIEWER)
    done, refused = outcomes_of([lambda m=m: team.leave(membership=m) for m in owners])
    assert (done, refused) == (1, 1)
    assert Membership.objects.filter(app=app, role=Role.OWNER).count() == 1


def test_a_demotion_racing_a_removal_leaves_one_owner() -> None:
    app = AppFactory()
    first = MembershipFactory(app=app, role=Role.OWNER)
    second = MembershipFactory(app=app, role=Role.OWNER)
    actor = Actor.console("someone@customer.example")
    done, refused = outcomes_of(
        [
            lambda: team.change_role(membership=first, role=Role.VIEWER, actor=actor),
            lambda: team.remove(membership=second, actor=actor),
        ]
    )
    assert (done, refused) == (1, 1)
    assert Membership.objects.filter(app=app, role=Role.OWNER).count() == 1
