"""What staff and the scheduler do for the console's people: reset a lost second factor,
invite from the admin (with the support role), and sweep what sign-ins leave behind."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import ActorType, AuditAction, AuditEvent
from accounts.roles import SUPPORT, setup_roles
from console.models import Authenticator, Invitation, PersonSession, RecoveryCode, SignInFailure
from console.services import housekeeping, team, two_factor
from console.tasks import sweep_console
from portal.celery import app as celery_app
from tests.console.people import code, enrolled, password_step, signed_in
from tests.factories import AppFactory, MembershipFactory, PersonFactory
from tests.staff import signed_in as signed_in_staff

pytestmark = pytest.mark.django_db


def invite(app, email: str) -> team.NewInvitation:
    return team.invite(app=app, email=email, role="viewer", actor=Actor.operator("test"))


def command(*args: str) -> tuple[dict, int]:
    out = StringIO()
    status = 0
    try:
        call_command(*args, "--json", stdout=out)
    except SystemExit as exc:
        status = exc.code
    return json.loads(out.getvalue()), status


def test_reset_console_2fa_removes_the_second_factor_and_ends_every_session() -> None:
    membership = MembershipFactory()
    person = membership.user
    device = enrolled(person)
    codes = two_factor.regenerate_recovery_codes(user=person)
    laptop = signed_in(person)
    half = Client()
    password_step(half, person.email)  # a lost phone's session, password step only
    bystander = signed_in(MembershipFactory().user, steps_ahead=1)

    result, status = command("reset_console_2fa", "--email", person.email.upper())
    assert status == 0
    assert result == {"email": person.email, "devices_removed": 1, "sessions_ended": 2}
    assert not Authenticator.objects.filter(user=person).exists()
    assert not RecoveryCode.objects.filter(user=person).exists()
    assert not two_factor.use_recovery_code(user=person, code=codes[0])
    overview = reverse("console:overview", args=[membership.app.app_id])
    assert laptop.get(overview).url.startswith(reverse("console:sign_in"))
    assert half.get(reverse("console:second_factor")).url.startswith(reverse("console:sign_in"))
    assert bystander.get(reverse("console:account")).status_code == 200
    event = AuditEvent.objects.get(action=AuditAction.CONSOLE_2FA_RESET)
    assert (event.actor_type, event.actor, event.target_id) == (
        ActorType.OPERATOR,
        "reset_console_2fa",
        person.email,
    )
    assert event.details == {"devices_removed": 1, "sessions_ended": 2}

    # The next sign-in, with the password, enrols a new authenticator: the old key is void.
    again = Client()
    password_step(again, person.email)
    page = again.get(reverse("console:second_factor")).content.decode()
    assert 'id="console-2fa-secret"' in page
    assert code(device) not in page
    assert not PersonSession.objects.exclude(
        session_key__in=Session.objects.values("session_key")
    ).exists()


def test_reset_console_2fa_refuses_unknown_people_and_staff() -> None:
    staff = PersonFactory(is_staff=True)
    for email in ("nobody@customer.example", staff.email, "not an address"):
        result, status = command("reset_console_2fa", "--email", email)
        assert status == 1 and "error" in result
    assert not AuditEvent.objects.exists()


def test_support_staff_invite_a_first_owner_from_the_app_page() -> None:
    setup_roles()
    app = AppFactory()
    support = User.objects.create_user("helpdesk", password="x", is_staff=True)
    support.groups.set(Group.objects.filter(name=SUPPORT))
    client = signed_in_staff(support)
    change = client.get(reverse("admin:accounts_app_change", args=[app.pk]))
    assert "Invite to the console" in change.content.decode()
    url = reverse("admin:accounts_app_staff_action", args=["invite_console_member"])
    response = client.post(
        f"{url}?ids={app.pk}",
        {"ids": str(app.pk), "email": "boss@customer.example", "role": "owner", "next": ""},
    )
    assert response.status_code == 200
    assert "/console/invitations/" in response.content.decode()
    # The shown-once page's words fit a link as well as a key.
    assert "<h1>Copy it now</h1>" in response.content.decode()
    assert "key" not in response.context["title"]
    # The customer's Team page says staff invited, not which staff account did (the audit
    # event, seen by staff, names it).
    assert Invitation.objects.get(app=app).invited_by == "staff"
    event = AuditEvent.objects.get(action=AuditAction.TEAM_INVITED)
    assert (event.actor_type, event.actor) == (ActorType.STAFF, "helpdesk")
    owner = MembershipFactory(app=app)
    team_page = signed_in(owner.user).get(reverse("console:team", args=[app.app_id]))
    assert "boss@customer.example" in team_page.content.decode()
    assert "helpdesk" not in team_page.content.decode()

    stranger = User.objects.create_user("no-role", password="x", is_staff=True)
    stranger.user_permissions.set(Permission.objects.filter(codename="view_app"))
    refused = signed_in_staff(stranger).post(
        f"{url}?ids={app.pk}",
        {"ids": str(app.pk), "email": "eve@customer.example", "role": "owner", "next": ""},
    )
    assert refused.status_code == 403
    assert Invitation.objects.count() == 1


def test_the_sweep_deletes_what_sign_ins_leave_behind_in_bounded_batches(
    django_assert_max_num_queries,
) -> None:
    now = timezone.now()
    person = MembershipFactory().user
    live = signed_in(person)
    ended = signed_in(person, steps_ahead=1)
    ended.post(reverse("console:sign_out"))  # its record goes at once; make one that lingers
    gone = PersonSession.objects.create(user=person, session_key="k" * 32)
    expired = [
        Session.objects.create(
            session_key=f"expired{index:02d}",
            session_data="",
            expire_date=now - dt.timedelta(seconds=1),
        )
        for index in range(5)
    ]
    PersonSession.objects.create(user=person, session_key=expired[0].session_key)
    app = MembershipFactory().app
    old = invite(app, "old@customer.example")
    recent = invite(app, "recent@customer.example")
    Invitation.objects.filter(pk=old.invitation.pk).update(
        expires_at=now - dt.timedelta(days=30, seconds=1)
    )
    Invitation.objects.filter(pk=recent.invitation.pk).update(
        expires_at=now - dt.timedelta(days=29)
    )
    SignInFailure.objects.create(key="a" * 64, failed_at=now - dt.timedelta(minutes=16))
    SignInFailure.objects.create(key="b" * 64, failed_at=now - dt.timedelta(minutes=1))

    with django_assert_max_num_queries(4 * 4):  # batches of 2: at most three rounds a kind
        swept = housekeeping.sweep(now=now, batch_size=2)
    assert swept == {
        "sessions": 5,
        "person_sessions": 2,
        "invitations": 1,
        "sign_in_failures": 1,
    }
    assert not Session.objects.filter(expire_date__lte=now).exists()
    assert not PersonSession.objects.filter(pk=gone.pk).exists()
    assert PersonSession.objects.filter(session_key=live.session.session_key).exists()
    assert live.get(reverse("console:account")).status_code == 200
    assert list(Invitation.objects.values_list("email", flat=True)) == ["recent@customer.example"]
    assert list(SignInFailure.objects.values_list("key", flat=True)) == ["b" * 64]
    assert housekeeping.sweep(now=now) == dict.fromkeys(swept, 0)


def test_the_beat_runs_the_console_sweep() -> None:
    celery_app.loader.import_default_modules()
    schedule = {e["task"]: e["schedule"] for e in celery_app.conf.beat_schedule.values()}
    assert schedule["console.tasks.sweep_console"] == 600.0
    assert celery_app.tasks["console.tasks.sweep_console"].acks_late
    Session.objects.create(
        session_key="expired", session_data="", expire_date=timezone.now() - dt.timedelta(1)
    )
    assert sweep_console.delay().get()["sessions"] == 1
