"""Every app page resolves its app through the person's membership."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from console.models import Role
from tests import staff
from tests.factories import AppFactory, MembershipFactory, PersonFactory

pytestmark = pytest.mark.django_db


def test_roles_are_ordered() -> None:
    assert Role.OWNER.allows(Role.DEVELOPER)
    assert Role.DEVELOPER.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.DEVELOPER)
    assert not Role.DEVELOPER.allows(Role.OWNER)


def test_another_apps_page_is_not_found(member) -> None:
    client, _ = member(Role.OWNER)
    other = AppFactory()
    response = client.get(reverse("console:overview", args=[other.app_id]))
    assert response.status_code == 404
    assert other.name not in response.content.decode()


def test_home_lists_the_apps_of_the_person_only(member) -> None:
    client, membership = member(Role.VIEWER)
    MembershipFactory(user=membership.user, role=Role.OWNER)
    stranger = MembershipFactory()
    page = client.get(reverse("console:home")).content.decode()
    assert membership.app.name in page
    assert stranger.app.name not in page


def test_home_with_one_app_goes_to_its_overview(member) -> None:
    client, membership = member(Role.VIEWER)
    response = client.get(reverse("console:home"))
    assert response.url == reverse("console:overview", args=[membership.app.app_id])


def test_signed_out_goes_to_sign_in_and_comes_back() -> None:
    path = reverse("console:overview", args=[AppFactory().app_id])
    response = Client().get(path)
    assert response.status_code == 302
    assert response.url.startswith(reverse("console:sign_in"))
    assert "next=" in response.url


def test_password_without_second_factor_is_not_enough() -> None:
    membership = MembershipFactory()
    client = Client()
    client.force_login(membership.user)
    response = client.get(reverse("console:overview", args=[membership.app.app_id]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("console:second_factor"))


def test_person_factory_is_not_staff() -> None:
    assert not PersonFactory().is_staff


@pytest.mark.parametrize("page", ["console:home", "console:account"])
def test_an_admin_session_is_not_a_console_session(page) -> None:
    """Staff signed in to the admin with their authenticator reach no console page, not even
    the person's own ones (their account is the admin's)."""
    admin = User.objects.create_user("support", password="x" * 12, is_staff=True)
    response = staff.signed_in(admin).get(reverse(page))
    assert response.status_code == 302
    assert response.url.startswith(reverse("console:sign_in"))
