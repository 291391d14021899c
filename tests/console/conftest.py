from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from accounts.models import App
from console.models import Membership, Role
from tests import staff
from tests.console.browser import console_page  # noqa: F401 - the console's browser page
from tests.factories import MembershipFactory


@pytest.fixture
def member(db: None) -> Callable[..., tuple[Client, Membership]]:
    """`member(role, app=None)`: a console person with that role in the app (a new one by
    default), and a client signed in with password and authenticator, as after sign-in."""

    def make(role: Role = Role.OWNER, app: App | None = None) -> tuple[Client, Membership]:
        membership = MembershipFactory(role=role, **({"app": app} if app else {}))
        return staff.signed_in(membership.user), membership

    return make
