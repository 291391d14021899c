"""Invitations and the Team page: who may join, with which role; an app keeps an owner."""

from __future__ import annotations

import datetime as dt
import json
import re
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import ActorType, AuditAction, AuditEvent
from console.models import Invitation, Membership, Role
from console.services import team
from portal.errors import DomainError
from tests.console.people import PASSWORD, code, code_from_secret, enrolled, signed_in
from tests.factories import AppFactory, MembershipFactory, PersonFactory
from tests.staff import signed_in as signed_in_staff

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new console passphrase"


def invite(app, email="new@customer.example", role=Role.DEVELOPER) -> team.NewInvitation:
    return team.invite(app=app, email=email, role=role, actor=Actor.operator("test"))


def path_of(url: str) -> str:
    return url.split("localhost:8000", 1)[1]


def accept_with_new_account(client: Client, url: str) -> None:
    """Opens the link, sets the password and enrols the authenticator."""
    response = client.get(path_of(url))
    assert response.url == reverse("console:invitation_accept")
    response = client.post(response.url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.url.startswith(reverse("console:second_factor"))
    page = client.get(response.url).content.decode()
    secret = re.search(r'id="console-2fa-secret" class="secret">([A-Z2-7 ]+)<', page).group(1)
    done = client.post(response.url, {"code": code_from_secret(secret)})
    assert done.status_code == 200 and "recovery-codes" in done.content.decode()


def test_an_invitation_creates_the_account_then_enrols_two_factor() -> None:
    app = AppFactory()
    new = invite(app, "New@Customer.example", Role.OWNER)
    assert new.invitation.email == "new@customer.example"
    assert new.invitation.expires_at - new.invitation.created_at == dt.timedelta(hours=72)
    token = new.url.rsplit("/", 2)[-2]
    assert token not in new.invitation.token_digest
    client = Client()
    response = client.get(path_of(new.url))
    page = client.get(response.url).content.decode()
    assert app.name in page and "owner" in page
    assert token not in page
    accept_with_new_account(client, new.url)
    membership = Membership.objects.get(app=app)
    assert (membership.user.email, membership.user.username, membership.role) == (
        "new@customer.example",
        "new@customer.example",
        Role.OWNER,
    )
    assert not membership.user.is_staff
    assert client.get(reverse("console:team", args=[app.app_id])).status_code == 200
    assert list(
        AuditEvent.objects.filter(app=app).order_by("pk").values_list("action", "actor_type")
    ) == [
        (AuditAction.TEAM_INVITED, ActorType.OPERATOR),
        (AuditAction.TEAM_JOINED, ActorType.CONSOLE),
    ]


def test_an_invitation_works_once() -> None:
    new = invite(AppFactory())
    accept_with_new_account(Client(), new.url)
    again = Client()
    response = again.get(again.get(path_of(new.url)).url)
    assert response.status_code == 410
    assert "already used" in response.content.decode()


def test_an_expired_invitation_is_refused() -> None:
    new = invite(AppFactory())
    client = Client()
    later = timezone.now() + dt.timedelta(hours=72, seconds=1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        response = client.get(client.get(path_of(new.url)).url)
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert not Membership.objects.exists()


def test_an_unknown_link_is_refused() -> None:
    client = Client()
    response = client.get(client.get("/console/invitations/not-a-token/").url)
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_an_existing_person_signs_in_then_joins() -> None:
    elsewhere = MembershipFactory(role=Role.VIEWER)
    person = elsewhere.user
    app = AppFactory()
    new = invite(app, person.email.upper(), Role.DEVELOPER)
    anonymous = Client()
    page = anonymous.get(anonymous.get(path_of(new.url)).url).content.decode()
    assert "already have an account" in page
    client = signed_in(person)
    response = client.get(path_of(new.url))
    assert "Join" in client.get(response.url).content.decode()
    joined = client.post(reverse("console:invitation_accept"))
    assert joined.url == reverse("console:overview", args=[app.app_id])
    assert Membership.objects.get(app=app, user=person).role == Role.DEVELOPER


def test_an_invitation_for_someone_else_is_refused_clearly() -> None:
    new = invite(AppFactory(), "someone@customer.example")
    intruder = MembershipFactory().user
    client = signed_in(intruder)
    response = client.get(client.get(path_of(new.url)).url)
    assert response.status_code == 403
    assert "This invitation is for someone@customer.example" in response.content.decode()
    assert client.post(reverse("console:invitation_accept")).status_code == 403
    assert Invitation.objects.get().accepted_at is None
    with pytest.raises(DomainError):
        team.accept_as(invitation=Invitation.objects.get(), user=intruder)


def test_the_invite_command_prints_the_link_once_as_json() -> None:
    app = AppFactory()
    out = StringIO()
    call_command(
        "invite_console_member",
        "--app", app.app_id, "--email", "first@customer.example", "--role", "owner", "--json",
        stdout=out,
    )  # fmt: skip
    result = json.loads(out.getvalue())
    assert set(result) == {"invitation_url", "expires_at"}
    assert result["invitation_url"].startswith("http://localhost:8000/console/invitations/")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["expires_at"])
    invitation = Invitation.objects.get()
    assert (invitation.email, invitation.role, invitation.invited_by) == (
        "first@customer.example",
        "owner",
        "staff",
    )
    token = result["invitation_url"].rstrip("/").rsplit("/", 1)[1]
    assert token not in str(Invitation.objects.values().get())


def test_the_invite_command_refuses_an_unknown_app_in_json() -> None:
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command(
            "invite_console_member",
            "--app", "0" * 24, "--email", "a@b.example", "--role", "owner", "--json",
            stdout=out,
        )  # fmt: skip
    assert "no app" in json.loads(out.getvalue())["error"]


def test_the_staff_admin_invites_from_the_app_page(admin_client: Client) -> None:
    app = AppFactory()
    change = admin_client.get(reverse("admin:accounts_app_change", args=[app.pk]))
    assert "Invite to the console" in change.content.decode()
    url = reverse("admin:accounts_app_staff_action", args=["invite_console_member"])
    response = admin_client.post(
        f"{url}?ids={app.pk}",
        {"ids": str(app.pk), "email": "boss@customer.example", "role": "owner", "next": ""},
    )
    assert response.status_code == 200
    link = re.search(r'class="shown-once-secret"[^>]*>([^<]+)<', response.content.decode())
    assert "/console/invitations/" in link.group(1)
    invitation = Invitation.objects.get(app=app)
    assert invitation.invited_by == "staff"
    event = AuditEvent.objects.get(action=AuditAction.TEAM_INVITED)
    assert (event.actor_type, event.app_id) == (ActorType.STAFF, app.pk)
    # Shown once: the admin's pages do not show it again.
    token = link.group(1).rstrip("/").rsplit("/", 1)[1]
    page = admin_client.get(reverse("admin:accounts_app_change", args=[app.pk]))
    assert token not in page.content.decode()


def test_the_team_page_lists_members_and_pending_invitations(member) -> None:
    client, owner = member(Role.OWNER)
    other = MembershipFactory(app=owner.app, role=Role.VIEWER)
    invite(owner.app, "pending@customer.example")
    page = client.get(reverse("console:team", args=[owner.app.app_id])).content.decode()
    assert owner.user.email in page and other.user.email in page
    assert "pending@customer.example" in page


def test_only_owners_manage_the_team(member) -> None:
    client, developer = member(Role.DEVELOPER)
    owner = MembershipFactory(app=developer.app, role=Role.OWNER)
    app_id = developer.app.app_id
    assert client.get(reverse("console:team", args=[app_id])).status_code == 403
    response = client.post(
        reverse("console:team_role", args=[app_id, owner.pk]), {"role": "viewer"}
    )
    assert response.status_code == 403
    assert Membership.objects.get(pk=owner.pk).role == Role.OWNER


def test_an_owner_invites_and_sees_the_link_once(member) -> None:
    client, owner = member(Role.OWNER)
    url = reverse("console:team_invite", args=[owner.app.app_id])
    response = client.post(url, {"email": "dev@customer.example", "role": "developer"})
    link = re.search(r'id="invitation-url">([^<]+)<', response.content.decode()).group(1)
    token = link.rstrip("/").rsplit("/", 1)[1]
    page = client.get(reverse("console:team", args=[owner.app.app_id])).content.decode()
    assert "dev@customer.example" in page and token not in page
    event = AuditEvent.objects.get(action=AuditAction.TEAM_INVITED)
    assert (event.actor_type, event.actor, event.app_id) == (
        ActorType.CONSOLE,
        owner.user.email,
        owner.app_id,
    )
    again = client.post(url, {"email": owner.user.email, "role": "viewer"})
    assert again.status_code == 400 and "already a member" in again.content.decode()


def test_an_owner_withdraws_an_invitation(member) -> None:
    client, owner = member(Role.OWNER)
    new = invite(owner.app)
    other_app = invite(AppFactory(), "x@customer.example")
    app_id = owner.app.app_id
    revoke = reverse("console:team_revoke", args=[app_id, other_app.invitation.pk])
    assert client.post(revoke).status_code == 404
    client.post(reverse("console:team_revoke", args=[app_id, new.invitation.pk]))
    anonymous = Client()
    response = anonymous.get(anonymous.get(path_of(new.url)).url)
    assert "withdrawn" in response.content.decode()
    assert Invitation.objects.get(pk=other_app.invitation.pk).revoked_at is None


def test_an_owner_changes_roles_and_removes_members(member) -> None:
    client, owner = member(Role.OWNER)
    other = MembershipFactory(app=owner.app, role=Role.VIEWER)
    stranger = MembershipFactory()
    app_id = owner.app.app_id
    client.post(reverse("console:team_role", args=[app_id, other.pk]), {"role": "owner"})
    assert Membership.objects.get(pk=other.pk).role == Role.OWNER
    response = client.post(reverse("console:team_role", args=[app_id, stranger.pk]))
    assert response.status_code == 404
    client.post(reverse("console:team_remove", args=[app_id, other.pk]))
    assert not Membership.objects.filter(pk=other.pk).exists()
    assert list(
        AuditEvent.objects.filter(app=owner.app).order_by("pk").values_list("action", flat=True)
    ) == [AuditAction.TEAM_ROLE_CHANGED, AuditAction.TEAM_REMOVED]


def test_the_last_owner_cannot_be_demoted_removed_or_leave(member) -> None:
    client, owner = member(Role.OWNER)
    MembershipFactory(app=owner.app, role=Role.DEVELOPER)
    app_id = owner.app.app_id
    client.post(reverse("console:team_role", args=[app_id, owner.pk]), {"role": "developer"})
    client.post(reverse("console:team_remove", args=[app_id, owner.pk]))
    response = client.post(reverse("console:team_leave", args=[app_id]), follow=True)
    assert "The last owner of an app cannot leave" in response.content.decode()
    assert Membership.objects.get(pk=owner.pk).role == Role.OWNER
    assert not AuditEvent.objects.filter(app=owner.app).exists()


def test_any_member_may_leave(member) -> None:
    client, viewer = member(Role.VIEWER)
    response = client.post(reverse("console:team_leave", args=[viewer.app.app_id]))
    assert response.url == reverse("console:home")
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    assert AuditEvent.objects.get().action == AuditAction.TEAM_LEFT


def test_an_owner_leaves_when_another_owner_stays(member) -> None:
    client, owner = member(Role.OWNER)
    MembershipFactory(app=owner.app, role=Role.OWNER)
    client.post(reverse("console:team_leave", args=[owner.app.app_id]))
    assert not Membership.objects.filter(pk=owner.pk).exists()


def test_a_staff_member_reaches_no_app_without_an_invitation(admin_client: Client) -> None:
    app = AppFactory()
    response = admin_client.get(reverse("console:team", args=[app.app_id]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("console:sign_in"))


def test_a_person_without_apps_is_told_so() -> None:
    client = signed_in(PersonFactory())
    assert "You belong to no app yet" in client.get(reverse("console:home")).content.decode()


def test_nobody_is_invited_to_a_disabled_app(admin_client: Client) -> None:
    app = AppFactory(is_active=False)
    with pytest.raises(DomainError, match="disabled"):
        invite(app)
    page = admin_client.get(reverse("admin:accounts_app_change", args=[app.pk]))
    assert "Invite to the console" not in page.content.decode()
    assert not Invitation.objects.exists()


def test_an_invitation_to_an_app_disabled_since_is_refused() -> None:
    app = AppFactory()
    new = invite(app)
    app.is_active = False
    app.save()
    client = Client()
    response = client.get(client.get(path_of(new.url)).url)
    assert response.status_code == 410 and "disabled" in response.content.decode()


def test_a_weak_password_is_refused_and_the_invitation_kept() -> None:
    new = invite(AppFactory())
    client = Client()
    accept = client.get(path_of(new.url)).url
    response = client.post(accept, {"password1": "password", "password2": "password"})
    assert response.status_code == 200
    assert "too common" in response.content.decode()
    assert Invitation.objects.get().accepted_at is None
    assert not Membership.objects.exists()


def test_an_existing_person_signing_in_from_the_invitation_comes_back_to_it() -> None:
    person = MembershipFactory().user
    device = enrolled(person)
    app = AppFactory()
    new = invite(app, person.email)
    client = Client()
    accept = client.get(path_of(new.url)).url
    sign_in_url = re.search(
        r'href="([^"]+)" id="invitation-sign-in"', client.get(accept).content.decode()
    ).group(1)
    response = client.post(
        sign_in_url.replace("&amp;", "&"), {"email": person.email, "password": PASSWORD}
    )
    second = client.post(response.url, {"code": code(device)})
    assert second.url == accept
    client.post(accept)
    assert Membership.objects.get(app=app).user == person


def test_the_invite_command_in_words_and_its_refusals() -> None:
    app = AppFactory()
    out = StringIO()
    call_command(
        "invite_console_member", "--app", app.app_id, "--email", "a@customer.example",
        "--role", "viewer", stdout=out,
    )  # fmt: skip
    assert "invitation_url: http://localhost:8000/console/invitations/" in out.getvalue()
    assert "shown only this once" in out.getvalue()
    bad = StringIO()
    with pytest.raises(SystemExit):
        call_command(
            "invite_console_member", "--app", app.app_id, "--email", "not-an-address",
            "--role", "viewer", "--json", stdout=bad,
        )  # fmt: skip
    assert "not an e-mail address" in json.loads(bad.getvalue())["error"]


def test_an_invitation_for_the_address_a_staff_account_is_named_after_is_refused_clearly() -> None:
    """Staff accounts sign in at the admin only and do not join customer consoles: a link for
    the address one is named after says so (before, it asked to sign in at the console, which
    refuses staff, or let an admin session join with the staff account), whoever opens it, and
    without calling it a staff account (the inviting owner holds the link too)."""
    staff = PersonFactory(username="ops@customer.example", email="", is_staff=True)
    app = AppFactory()
    new = invite(app, "Ops@Customer.example", Role.VIEWER)
    expected = "The account ops@customer.example cannot join a customer&#x27;s console"

    anonymous = Client()
    page = anonymous.get(anonymous.get(path_of(new.url)).url)
    assert page.status_code == 403 and expected in page.content.decode()
    assert "already have an account" not in page.content.decode()
    assert "staff" not in page.content.decode()
    half = Client()
    half.force_login(staff)  # the admin's password step only
    assert expected in half.get(half.get(path_of(new.url)).url).content.decode()
    verified = signed_in_staff(staff)  # password and the admin's authenticator
    page = verified.get(verified.get(path_of(new.url)).url)
    assert page.status_code == 403 and expected in page.content.decode()
    assert verified.post(reverse("console:invitation_accept")).status_code == 403
    with pytest.raises(DomainError, match="cannot join"):
        team.accept_as(invitation=new.invitation, user=staff)
    assert not Membership.objects.exists()
    assert Invitation.objects.get().accepted_at is None
