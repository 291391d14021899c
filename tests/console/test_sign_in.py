"""Signing in to the console: password, then the authenticator (enrolled at the first
sign-in) or a recovery code; lockout; signing out."""

from __future__ import annotations

import datetime as dt
import re
from unittest import mock

import pytest
from axes.models import AccessAttempt
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ActorType, AuditAction, AuditEvent
from console.models import Authenticator, PersonSession, RecoveryCode, SignInFailure
from console.services import two_factor
from tests.console.people import (
    PASSWORD,
    code,
    code_from_secret,
    code_step,
    enrolled,
    password_step,
    signed_in,
)
from tests.factories import MembershipFactory, PersonFactory
from tests.staff import signed_in as signed_in_staff

pytestmark = pytest.mark.django_db

CODE_PATTERN = re.compile(r"<code>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</code>")


def actions(email: str = "") -> list[str]:
    events = AuditEvent.objects.filter(actor_type=ActorType.CONSOLE).order_by("pk")
    if email:
        events = events.filter(actor=email)
    return list(events.values_list("action", flat=True))


def enrol(client: Client) -> list[str]:
    """Through the enrolment page as a person would: the recovery codes it showed."""
    page = client.get(reverse("console:second_factor")).content.decode()
    secret = re.search(r'id="console-2fa-secret" class="secret">([A-Z2-7 ]+)<', page).group(1)
    response = client.post(reverse("console:second_factor"), {"code": code_from_secret(secret)})
    assert response.status_code == 200
    return CODE_PATTERN.findall(response.content.decode())


def test_first_sign_in_enrols_the_authenticator_then_shows_ten_recovery_codes_once() -> None:
    membership = MembershipFactory()
    person = membership.user
    client = Client()
    response = password_step(client, person.email)
    assert response.url.startswith(reverse("console:second_factor"))

    page = client.get(response.url).content.decode()
    assert "<svg" in page and "QR code of the authenticator key" in page  # drawn inline
    secret = re.search(r'id="console-2fa-secret" class="secret">([A-Z2-7 ]+)<', page).group(1)
    device = Authenticator.objects.get(user=person)
    assert not device.confirmed
    assert two_factor.typed_secret(device) == secret
    # The same key across reloads: what was scanned a minute ago still works.
    assert secret in client.get(reverse("console:second_factor")).content.decode()
    # Nothing of the app before the enrolment is done.
    overview = reverse("console:overview", args=[membership.app.app_id])
    assert client.get(overview).url.startswith(reverse("console:second_factor"))

    wrong = client.post(reverse("console:second_factor"), {"code": "000000"})
    assert "not the code the app shows" in wrong.content.decode()
    done = client.post(reverse("console:second_factor"), {"code": code_from_secret(secret)})
    codes = CODE_PATTERN.findall(done.content.decode())
    assert len(set(codes)) == 10
    assert client.get(overview).status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    # Stored as digests only, and never shown again.
    stored = set(RecoveryCode.objects.filter(user=person).values_list("digest", flat=True))
    assert len(stored) == 10 and not {c.replace("-", "") for c in codes} & stored
    assert not any(c in client.get(reverse("console:account")).content.decode() for c in codes)
    assert actions(person.email) == [
        AuditAction.CONSOLE_SIGN_IN_FAILED,  # the wrong code
        AuditAction.CONSOLE_2FA_ENROLLED,
        AuditAction.CONSOLE_SIGNED_IN,
    ]


def test_the_totp_key_is_sealed_in_the_database() -> None:
    device = enrolled(PersonFactory())
    key = two_factor.shared_key(device)
    assert len(key) == two_factor.KEY_BYTES
    assert key.hex() not in device.sealed_key
    assert two_factor.typed_secret(device).replace(" ", "") not in device.sealed_key


def test_sign_in_with_password_and_code_then_the_same_code_is_refused() -> None:
    membership = MembershipFactory()
    person = membership.user
    device = enrolled(person)
    client = Client()
    overview = reverse("console:overview", args=[membership.app.app_id])
    response = password_step(client, person.email, next=overview)
    assert response.status_code == 302
    assert (
        not Session.objects.get(session_key=client.session.session_key)
        .get_decoded()
        .get("otp_device_id")
    )
    first_key = client.session.session_key
    now = code(device)
    response = code_step(client, now, next=overview)
    assert response.url == overview
    assert client.session.session_key != first_key  # a new session once verified
    assert client.get(overview).status_code == 200
    assert actions(person.email) == [AuditAction.CONSOLE_SIGNED_IN]

    other = Client()
    password_step(other, person.email)
    refused = code_step(other, now)
    assert refused.status_code == 200
    assert "That code is not right" in refused.content.decode()


def test_each_recovery_code_works_once() -> None:
    person = MembershipFactory().user
    enrolled(person)
    codes = two_factor.regenerate_recovery_codes(user=person)
    client = Client()
    password_step(client, person.email)
    assert code_step(client, codes[0].upper()).status_code == 302  # typed in any case
    event = AuditEvent.objects.get(action=AuditAction.CONSOLE_RECOVERY_USED)
    assert event.details == {"codes_left": 9} and event.actor == person.email

    again = Client()
    password_step(again, person.email)
    assert code_step(again, codes[0]).status_code == 200
    assert code_step(again, codes[1]).status_code == 302
    assert RecoveryCode.objects.filter(user=person, used_at__isnull=True).count() == 8


def test_new_recovery_codes_replace_the_old_ones() -> None:
    person = MembershipFactory().user
    client = signed_in(person)
    old = two_factor.regenerate_recovery_codes(user=person)
    wrong = client.post(reverse("console:account_recovery_codes"), {"password": "nope"})
    assert wrong.status_code == 400
    response = client.post(reverse("console:account_recovery_codes"), {"password": PASSWORD})
    new = CODE_PATTERN.findall(response.content.decode())
    assert len(new) == 10
    assert not two_factor.use_recovery_code(user=person, code=old[0])
    assert two_factor.use_recovery_code(user=person, code=new[0])


def test_a_wrong_password_says_so_without_telling_whether_the_account_exists() -> None:
    person = MembershipFactory().user
    wrong = password_step(Client(), person.email, "not the password").content.decode()
    unknown = password_step(Client(), "nobody@customer.example", "x").content.decode()
    message = "The e-mail address or the password is not right."
    assert message in wrong and message in unknown
    failed = AuditEvent.objects.filter(action=AuditAction.CONSOLE_SIGN_IN_FAILED).order_by("pk")
    assert [e.actor for e in failed] == [person.email, ""]  # an unknown name is not kept


def test_staff_accounts_do_not_sign_in_to_the_console() -> None:
    staff = PersonFactory(is_staff=True)
    response = password_step(Client(), staff.email)
    assert response.status_code == 200
    assert "not right" in response.content.decode()


def test_five_failures_lock_the_account_for_fifteen_minutes() -> None:
    person = MembershipFactory().user
    device = enrolled(person)
    for _ in range(4):
        assert password_step(Client(), person.email, "wrong").status_code == 200
    locked = password_step(Client(), person.email, "wrong")
    assert locked.status_code == 429
    assert "locked for 15 more minutes" in locked.content.decode()
    assert int(locked["Retry-After"]) == 15 * 60
    # Even the right password is not checked now; nothing more is counted.
    assert password_step(Client(), person.email).status_code == 429
    assert AuditEvent.objects.filter(action=AuditAction.CONSOLE_LOCKED_OUT).count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.CONSOLE_SIGN_IN_FAILED).count() == 5

    later = timezone.now() + dt.timedelta(minutes=14)
    with mock.patch("django.utils.timezone.now", return_value=later):
        response = password_step(Client(), person.email)
        assert response.status_code == 429
        assert "locked for 1 more minute." in response.content.decode()
    later = timezone.now() + dt.timedelta(minutes=15, seconds=1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        client = Client()
        assert password_step(client, person.email).status_code == 302
        assert code_step(client, code(device)).status_code == 302


def test_failures_from_one_address_lock_it_whatever_the_accounts() -> None:
    people = [MembershipFactory().user for _ in range(5)]
    for person in people:
        password_step(Client(), person.email, "wrong")
    newcomer = MembershipFactory().user
    assert password_step(Client(), newcomer.email).status_code == 429
    other_address = Client(REMOTE_ADDR="192.0.2.9")
    assert password_step(other_address, newcomer.email).status_code == 302
    # Neither the e-mails typed nor the address are kept in clear.
    keys = set(SignInFailure.objects.values_list("key", flat=True))
    assert not any("@" in key or "127.0.0.1" in key for key in keys)


def test_a_wrong_code_counts_as_a_failure() -> None:
    person = MembershipFactory().user
    enrolled(person)
    client = Client()
    password_step(client, person.email)
    for _ in range(4):
        assert code_step(client, "123456").status_code == 200
    assert code_step(client, "123456").status_code == 429
    assert password_step(Client(REMOTE_ADDR="192.0.2.7"), person.email).status_code == 429


def test_a_complete_sign_in_forgets_the_accounts_earlier_slips() -> None:
    person = MembershipFactory().user
    enrolled(person)
    for _ in range(4):
        password_step(Client(REMOTE_ADDR="192.0.2.1"), person.email, "wrong")
    signed_in(person)
    for _ in range(4):
        password_step(Client(REMOTE_ADDR="192.0.2.2"), person.email, "wrong")
    assert password_step(Client(REMOTE_ADDR="192.0.2.3"), person.email).status_code == 302


def test_console_failures_never_count_towards_the_staff_lockout() -> None:
    person = MembershipFactory().user
    for _ in range(6):
        password_step(Client(), person.email, "wrong")
    assert not AccessAttempt.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.STAFF_SIGN_IN_FAILED).exists()


def test_console_people_never_reach_the_admin() -> None:
    client = signed_in(MembershipFactory().user)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")
    page = client.get(response.url).content.decode()
    assert "not authorized" in page


def test_sign_out_ends_this_session() -> None:
    membership = MembershipFactory()
    client = signed_in(membership.user)
    assert client.get(reverse("console:sign_out")).status_code == 405  # changes are POSTs
    assert client.post(reverse("console:sign_out")).url == reverse("console:sign_in")
    overview = reverse("console:overview", args=[membership.app.app_id])
    assert client.get(overview).url.startswith(reverse("console:sign_in"))
    assert actions(membership.user.email)[-1] == AuditAction.CONSOLE_SIGNED_OUT


def test_sign_out_everywhere_ends_every_session_of_the_person_only() -> None:
    membership = MembershipFactory()
    person = membership.user
    laptop = signed_in(person)
    phone = signed_in(person, steps_ahead=1)
    half = Client()
    password_step(half, person.email)  # signed in with the password only
    stranger = signed_in(MembershipFactory().user)
    response = laptop.post(reverse("console:account_sign_out_all"))
    assert response.url == reverse("console:sign_in")
    overview = reverse("console:overview", args=[membership.app.app_id])
    for client in (laptop, phone):
        assert client.get(overview).url.startswith(reverse("console:sign_in"))
    assert half.get(reverse("console:second_factor")).url.startswith(reverse("console:sign_in"))
    assert stranger.get(reverse("console:account")).status_code == 200
    event = AuditEvent.objects.get(action=AuditAction.CONSOLE_SESSIONS_ENDED)
    assert event.details == {"sessions": 3}


def test_changing_the_password_keeps_this_session_and_ends_the_others() -> None:
    person = MembershipFactory().user
    here = signed_in(person)
    there = signed_in(person, steps_ahead=1)
    refused = here.post(
        reverse("console:account_password"),
        {"old_password": "wrong", "new_password1": "x", "new_password2": "x"},
    )
    assert refused.status_code == 400
    new = "another long console passphrase"
    response = here.post(
        reverse("console:account_password"),
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response.url == reverse("console:account")
    assert here.get(reverse("console:account")).status_code == 200
    assert there.get(reverse("console:account")).status_code == 302
    person.refresh_from_db()
    assert person.check_password(new)
    assert AuditAction.CONSOLE_PASSWORD_CHANGED in actions(person.email)


def test_a_new_authenticator_replaces_the_old_one_only_once_confirmed() -> None:
    person = MembershipFactory().user
    old = enrolled(person)
    client = signed_in(person)
    page = client.get(reverse("console:account_two_factor")).content.decode()
    secret = re.search(r'id="console-2fa-secret" class="secret">([A-Z2-7 ]+)<', page).group(1)
    assert Authenticator.objects.get(pk=old.pk).confirmed  # still the one that works
    response = client.post(
        reverse("console:account_two_factor"),
        {"code": code_from_secret(secret), "password": PASSWORD},
    )
    assert len(CODE_PATTERN.findall(response.content.decode())) == 10
    assert not Authenticator.objects.filter(pk=old.pk).exists()
    assert client.get(reverse("console:account")).status_code == 200  # still verified
    assert AuditAction.CONSOLE_2FA_RESET in actions(person.email)


def test_ended_sessions_are_forgotten_at_the_next_sign_in() -> None:
    person = MembershipFactory().user
    first = signed_in(person)
    first.post(reverse("console:sign_out"))
    signed_in(person, steps_ahead=1)
    live = set(Session.objects.values_list("session_key", flat=True))
    remembered = set(
        PersonSession.objects.filter(user=person).values_list("session_key", flat=True)
    )
    assert remembered and remembered <= live


def test_a_staff_session_gets_no_console_authenticator(admin_user) -> None:
    half = Client()
    half.force_login(admin_user)  # the admin's password step, before its own second factor
    response = half.get(reverse("console:second_factor"))
    assert response.url.startswith(reverse("console:sign_in"))
    verified = signed_in_staff(admin_user)
    assert verified.get(reverse("console:account_two_factor")).url.startswith(
        reverse("console:sign_in")
    )
    assert not Authenticator.objects.filter(user=admin_user).exists()


def test_the_failure_table_keeps_only_the_last_window() -> None:
    for index in range(3):
        password_step(Client(REMOTE_ADDR=f"192.0.2.{index + 1}"), f"x{index}@c.example", "x")
    assert SignInFailure.objects.count() == 6  # one per account, one per address
    later = timezone.now() + dt.timedelta(minutes=15, seconds=1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        password_step(Client(REMOTE_ADDR="192.0.2.9"), "y@c.example", "x")
    assert SignInFailure.objects.count() == 2


def test_a_secret_key_rotation_keeps_authenticators_and_recovery_codes(settings) -> None:
    person = MembershipFactory().user
    device = enrolled(person)
    codes = two_factor.regenerate_recovery_codes(user=person)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-rotated-secret-key-for-this-test-only-0123456789"
    assert two_factor.verify_code(user=person, code=code(device)) is not None
    assert two_factor.use_recovery_code(user=person, code=codes[0])
    next_code = code(device, steps_ahead=1)
    settings.SECRET_KEY_FALLBACKS = []  # the old key gone: what it sealed is unreadable
    assert two_factor.verify_code(user=person, code=next_code) is None
    assert not two_factor.use_recovery_code(user=person, code=codes[1])


OTHER_DIGITS = [
    "\u00b2" * 6,  # superscript two: str.isdigit() says yes, int() refuses it
    "".join(chr(0xFF11 + i) for i in range(6)),  # full-width 1 to 6
    "".join(chr(0x0661 + i) for i in range(6)),  # Arabic-Indic 1 to 6
]


@pytest.mark.parametrize("typed", [*OTHER_DIGITS, "12\x0034", "x" * 32])
def test_a_code_of_other_digits_or_garbage_is_a_wrong_code_not_an_error(typed: str) -> None:
    """Digits of other scripts pass str.isdigit(); some of them (superscripts) then break int()."""
    person = MembershipFactory().user
    enrolled(person)
    client = Client()
    password_step(client, person.email)
    assert code_step(client, typed).status_code == 200
    fresh = MembershipFactory().user
    enrolling = Client()
    password_step(enrolling, fresh.email)
    assert enrolling.post(reverse("console:second_factor"), {"code": typed}).status_code == 200
    assert not Authenticator.objects.filter(user=fresh, confirmed=True).exists()


def test_a_new_authenticator_needs_the_password_too() -> None:
    """A session left open must not be enough to swap the authenticator (and so the recovery
    codes) for one the person does not hold."""
    person = MembershipFactory().user
    old = enrolled(person)
    old_codes = two_factor.regenerate_recovery_codes(user=person)
    client = signed_in(person)
    page = client.get(reverse("console:account_two_factor")).content.decode()
    assert 'name="password"' in page
    secret = re.search(r'id="console-2fa-secret" class="secret">([A-Z2-7 ]+)<', page).group(1)
    refused = client.post(
        reverse("console:account_two_factor"),
        {"code": code_from_secret(secret), "password": "not the password"},
    )
    assert refused.status_code == 200 and "That is not your password." in refused.content.decode()
    assert (
        client.post(
            reverse("console:account_two_factor"), {"code": code_from_secret(secret)}
        ).status_code
        == 200
    )
    assert Authenticator.objects.filter(pk=old.pk, confirmed=True).exists()
    assert two_factor.use_recovery_code(user=person, code=old_codes[0])
    done = client.post(
        reverse("console:account_two_factor"),
        {"code": code_from_secret(secret), "password": PASSWORD},
    )
    assert len(CODE_PATTERN.findall(done.content.decode())) == 10
    assert not Authenticator.objects.filter(pk=old.pk).exists()


@pytest.mark.parametrize(
    "route, field, extra",
    [
        ("console:account_recovery_codes", "password", {}),
        ("console:account_two_factor", "password", {"code": "123456"}),
        (
            "console:account_password",
            "old_password",
            {"new_password1": "a newer passphrase!", "new_password2": "a newer passphrase!"},
        ),
    ],
)
def test_password_guesses_from_a_session_left_open_count_towards_the_lockout(
    route: str, field: str, extra: dict
) -> None:
    """The account page's forms ask for the password; a session left open (or stolen) must not
    try it at leisure, where the sign-in page would lock after five."""
    person = MembershipFactory().user
    client = signed_in(person)
    for attempt in range(4):
        response = client.post(reverse(route), {field: f"guess {attempt}", **extra})
        assert response.status_code in (200, 400)
    locked = client.post(reverse(route), {field: "guess 5", **extra})
    assert locked.status_code == 429
    assert password_step(Client(REMOTE_ADDR="192.0.2.8"), person.email).status_code == 429
    assert AuditEvent.objects.filter(action=AuditAction.CONSOLE_LOCKED_OUT).exists()


def test_a_session_key_planted_before_sign_in_is_replaced_at_each_step() -> None:
    """Session fixation: a key someone else knows (set before the sign-in) is worth nothing
    after the password step, and the password step's key nothing after the second factor."""
    person = MembershipFactory().user
    device = enrolled(person)
    client = Client()
    planted = client.session
    planted["anything"] = 1
    planted.save()
    password_step(client, person.email)
    after_password = client.session.session_key
    assert after_password != planted.session_key
    assert not Session.objects.filter(session_key=planted.session_key).exists()
    code_step(client, code(device))
    assert client.session.session_key != after_password
    assert not Session.objects.filter(session_key=after_password).exists()


def test_failures_from_one_ipv6_network_lock_it_whatever_the_address_in_it() -> None:
    """An IPv6 client commonly holds a whole /64: counted per address, it could try without
    end, a new address for each guess. Addresses of one /64 count as one."""
    for index in range(5):
        password_step(
            Client(REMOTE_ADDR=f"2001:db8:1:2::{index + 1:x}"), f"x{index}@c.example", "wrong"
        )
    newcomer = MembershipFactory().user
    assert (
        password_step(Client(REMOTE_ADDR="2001:db8:1:2:ffff::9"), newcomer.email).status_code == 429
    )
    assert password_step(Client(REMOTE_ADDR="2001:db8:1:3::1"), newcomer.email).status_code == 302
