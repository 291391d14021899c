"""Staff sign-in to the admin: lockout per account and per address, the second factor, the
audit events of sign-ins, and the History page as the object's audit timeline."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent
from portal.throttling import client_address
from tests.admin.conftest import PASSWORD, World, logged_in
from tests.helpers import issue_code
from tests.staff import authenticator, code

LOGIN = "/admin/login/"
LOCKED = "Sign-in locked"


def sign_in(
    username: str,
    password: str = PASSWORD,
    otp: str = "",
    address: str = "198.51.100.1",
    client: Client | None = None,
    **headers: str,
):
    client = client or Client()
    response = client.post(
        f"{LOGIN}?next=/admin/",
        {"username": username, "password": password, "otp_token": otp},
        REMOTE_ADDR=address,
        **headers,
    )
    response.client = client
    return response


def signed_in_as(response) -> str | None:
    user_id = response.client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).username if user_id else None


def is_locked_out(response) -> bool:
    return response.status_code == 429 and LOCKED in response.text


def events(action: AuditAction) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("occurred_at", "id"))


# --- lockout -------------------------------------------------------------------------------------


def test_five_failures_lock_the_account_from_every_address(support_user, key_admin_user) -> None:
    device = authenticator(support_user)
    for n in range(1, 5):
        refused = sign_in("support", "wrong password", address=f"198.51.100.{n}")
        assert refused.status_code == 200
        assert "Please enter the correct username, password and authentication code" in (
            refused.text
        )
    fifth = sign_in("support", "wrong password", address="198.51.100.5")
    assert is_locked_out(fifth)
    assert "15 minutes" in fifth.text

    # The right password and code, from an address that never failed: still refused.
    right = sign_in("support", otp=code(device), address="192.0.2.50")
    assert is_locked_out(right)
    assert signed_in_as(right) is None

    # Another account, from another address, is not concerned.
    other = sign_in("keyadmin", otp=code(authenticator(key_admin_user)), address="192.0.2.60")
    assert other.status_code == 302
    assert signed_in_as(other) == "keyadmin"


def test_five_failures_from_one_address_lock_that_address(support_user) -> None:
    device = authenticator(support_user)
    for n in range(5):
        sign_in(f"nobody-{n}", "guess", address="203.0.113.9")

    from_there = sign_in("support", otp=code(device), address="203.0.113.9")
    assert is_locked_out(from_there)
    assert signed_in_as(from_there) is None

    elsewhere = sign_in("support", otp=code(device), address="203.0.113.10")
    assert elsewhere.status_code == 302
    assert signed_in_as(elsewhere) == "support"


def test_an_operator_unlocks_an_account(support_user) -> None:
    device = authenticator(support_user)
    for n in range(5):
        sign_in("support", "wrong password", address=f"198.51.100.{n}")
    assert is_locked_out(sign_in("support", otp=code(device)))

    call_command("axes_reset_username", "support", stdout=StringIO())
    unlocked = sign_in("support", otp=code(device))
    assert unlocked.status_code == 302
    assert signed_in_as(unlocked) == "support"


def test_unknown_names_are_counted_like_accounts_and_never_stored(db: None) -> None:
    """A locked unknown name answers like a locked account (no hint of which names exist),
    and what was typed as a name (a password, sometimes) is kept only as a keyed digest."""
    typed = "my-password-in-the-wrong-field"
    answers = [sign_in(typed, "x", address=f"198.51.100.{n}") for n in range(5)]
    assert is_locked_out(answers[-1])
    stored = list(AccessAttempt.objects.values_list("username", "post_data"))
    assert stored
    assert all(typed not in username and typed not in post for username, post in stored)
    assert not AuditEvent.objects.filter(actor=typed).exists()
    assert typed not in json.dumps([e.details for e in AuditEvent.objects.all()])


def test_a_wrong_code_counts_as_a_failed_sign_in(support_user) -> None:
    device = authenticator(support_user)
    wrong_code = f"{(int(code(device)) + 1) % 1_000_000:06d}"
    wrong_password = sign_in("support", "wrong password", otp=code(device))
    right_password_wrong_code = sign_in("support", otp=wrong_code)
    no_code = sign_in("support")
    # The same answer as a wrong password: the form never tells the password was right.
    message = "Please enter the correct username, password and authentication code"
    for refused in (wrong_password, right_password_wrong_code, no_code):
        assert refused.status_code == 200
        assert message in refused.text
        assert signed_in_as(refused) is None
    failures = AccessAttempt.objects.filter(username="support")
    assert sum(failures.values_list("failures_since_start", flat=True)) == 3
    assert len(events(AuditAction.STAFF_SIGN_IN_FAILED)) == 3


def test_the_address_is_the_one_num_proxies_trusts(support_user) -> None:
    device = authenticator(support_user)
    # NUM_PROXIES=0 (the default): X-Forwarded-For is the client's own word, ignored.
    for n in range(5):
        sign_in(f"nobody-{n}", "x", address="10.0.0.2", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert is_locked_out(
        sign_in("support", otp=code(device), address="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.99")
    )

    # One proxy of ours: the address it appends counts, and clients behind it are apart.
    proxied = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    with override_settings(REST_FRAMEWORK=proxied):
        for n in range(5):
            sign_in(f"other-{n}", "x", address="10.0.0.3", HTTP_X_FORWARDED_FOR="203.0.113.7")
        locked = sign_in(
            "support", otp=code(device), address="10.0.0.3", HTTP_X_FORWARDED_FOR="203.0.113.7"
        )
        assert is_locked_out(locked)
        neighbour = sign_in(
            "support",
            otp=code(device),
            address="10.0.0.3",
            HTTP_X_FORWARDED_FOR="forged, 203.0.113.8",
        )
        assert neighbour.status_code == 302
        assert signed_in_as(neighbour) == "support"


def test_client_address_falls_back_to_the_socket_for_anything_not_an_address() -> None:
    factory = RequestFactory()
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}):
        forged = factory.get("/", REMOTE_ADDR="10.0.0.4", HTTP_X_FORWARDED_FOR="not-an-ip")
        assert client_address(forged) == "10.0.0.4"
        good = factory.get("/", REMOTE_ADDR="10.0.0.4", HTTP_X_FORWARDED_FOR="a, 2001:db8::1")
        assert client_address(good) == "2001:db8::1"
    assert client_address(factory.get("/", REMOTE_ADDR="10.0.0.5")) == "10.0.0.5"


def test_the_api_is_untouched_by_a_locked_address(customer, world: World) -> None:
    for n in range(5):
        sign_in(f"nobody-{n}", "x", address="127.0.0.1")
    attempts = AccessAttempt.objects.count()
    assert issue_code(customer, "alice")["authentication_code"]
    bad_key = Client().post(
        "/users/auth-code",
        {"external_id": "alice"},
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer 0000000000000000.wrong",
    )
    assert bad_key.status_code == 401
    assert bad_key["Content-Type"].startswith("application/json")
    assert AccessAttempt.objects.count() == attempts


# --- second factor -------------------------------------------------------------------------------


def test_first_sign_in_enrols_an_authenticator(support_user) -> None:
    password_only = sign_in("support")
    assert password_only.status_code == 302
    client = password_only.client

    # Anywhere in the admin, the member is sent to set up the app first.
    sent = client.get("/admin/accounts/linkeduser/")
    enrol_url = reverse("admin:staff_2fa_enrol")
    assert sent.status_code == 302
    assert sent["Location"].startswith(enrol_url)
    page = client.get(sent["Location"])
    assert page.status_code == 200
    svg = page.text.split('<div id="staff-2fa-qr"', 1)[1].split("</svg>", 1)[0]
    assert "<svg" in svg
    assert "http" not in svg  # drawn here: no image fetched from anywhere
    device = TOTPDevice.objects.get(user=support_user)
    assert not device.confirmed
    assert page.context["secret"].replace(" ", "") in page.text.replace(" ", "")

    wrong = client.post(enrol_url, {"token": "000000", "next": "/admin/accounts/linkeduser/"})
    assert wrong.status_code == 200
    assert "This is not the code" in wrong.text
    device.refresh_from_db()
    device.throttling_failure_count = 0  # the device backs off after a failure
    device.save()

    confirmed = client.post(
        enrol_url, {"token": code(device), "next": "/admin/accounts/linkeduser/"}
    )
    assert confirmed.status_code == 302
    assert confirmed["Location"] == "/admin/accounts/linkeduser/"
    assert client.get("/admin/accounts/linkeduser/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    assert len(events(AuditAction.STAFF_2FA_ENROLLED)) == 1

    # From now on the sign-in asks for the code.
    assert signed_in_as(sign_in("support")) is None
    again = sign_in("support", otp=code(device, steps_ahead=1))
    assert signed_in_as(again) == "support"


def test_a_key_shown_to_one_session_is_never_the_one_another_confirms(support_user) -> None:
    """Someone holding only the password opens the set-up page and keeps the key it shows;
    the member then sets up from a session of their own: that key is void, and confirming
    ends the other session."""
    enrol_url = reverse("admin:staff_2fa_enrol")
    intruder = sign_in("support", address="203.0.113.66").client
    seen = intruder.get(enrol_url).context["secret"]
    member = sign_in("support", address="192.0.2.7").client
    page = member.get(enrol_url)
    assert page.context["secret"] != seen
    device = TOTPDevice.objects.get(user=support_user)  # the intruder's key is gone
    assert member.post(enrol_url, {"token": code(device)}).status_code == 302

    assert intruder.get("/admin/")["Location"].startswith(LOGIN)  # signed out
    stolen = TOTPDevice(user=support_user, key=_hex_key(seen))
    assert signed_in_as(sign_in("support", otp=code(stolen))) is None


def _hex_key(grouped_base32: str) -> str:
    import base64

    return base64.b32decode(grouped_base32.replace(" ", "")).hex()


def test_the_lockout_says_when_to_retry_and_records_no_more_failures(support_user) -> None:
    for n in range(5):
        sign_in("support", "wrong password", address=f"198.51.100.{n}")
    recorded = len(events(AuditAction.STAFF_SIGN_IN_FAILED))
    locked = [sign_in("support", "wrong password") for _ in range(20)]
    assert all(is_locked_out(answer) for answer in locked)
    assert locked[-1]["Retry-After"] == str(settings.AXES_COOLOFF_TIME.seconds)
    assert len(events(AuditAction.STAFF_SIGN_IN_FAILED)) == recorded  # not one row a try


def test_a_session_without_the_code_reaches_nothing_but_sign_out(support_user) -> None:
    authenticator(support_user)
    client = Client()
    client.force_login(support_user)  # the password alone, e.g. before 2FA was required
    for url in ["/admin/", "/admin/accounts/linkeduser/", reverse("admin:staff_2fa_enrol")]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(LOGIN), url
    assert client.post(reverse("admin:logout")).status_code == 200
    assert "_auth_user_id" not in client.session


@override_settings(STAFF_2FA_REQUIRED=False)
def test_without_required_2fa_the_password_is_enough(support_user) -> None:
    assert 'name="otp_token"' not in Client().get(LOGIN).text
    response = sign_in("support")
    assert response.status_code == 302
    assert response.client.get("/admin/").status_code == 200


def test_an_operator_resets_a_lost_authenticator(support_user) -> None:
    device = authenticator(support_user)
    on_the_lost_phone = sign_in("support", otp=code(device)).client
    assert on_the_lost_phone.get("/admin/").status_code == 200
    out = StringIO()
    call_command("reset_staff_2fa", "support", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"username": "support", "devices_removed": 1}
    # The session left open elsewhere is over: it cannot set up a new authenticator.
    assert on_the_lost_phone.get("/admin/")["Location"].startswith(reverse("admin:login"))
    assert not TOTPDevice.objects.filter(user=support_user).exists()
    (reset,) = events(AuditAction.STAFF_2FA_RESET)
    assert (reset.actor_type, reset.target_id) == ("operator", "support")
    # The next sign-in, with the password, leads to setting up a new one.
    client = sign_in("support").client
    assert client.get("/admin/")["Location"].startswith(reverse("admin:staff_2fa_enrol"))

    unknown = StringIO()
    with pytest.raises(SystemExit):
        call_command("reset_staff_2fa", "ghost", "--json", stdout=unknown)
    assert json.loads(unknown.getvalue()) == {"error": "no user 'ghost'"}


def test_no_admin_page_offers_the_authenticators_secret_keys(root: Client) -> None:
    assert root.get("/admin/otp_totp/totpdevice/").status_code == 404


# --- audit events --------------------------------------------------------------------------------


def test_sign_in_sign_out_and_failures_are_audit_events(support_user) -> None:
    device = authenticator(support_user)
    sign_in("support", "not the password", address="192.0.2.1")
    sign_in("nobody", "guess", address="192.0.2.2")
    signed = sign_in("support", otp=code(device), address="192.0.2.3")
    assert signed_in_as(signed) == "support"
    signed.client.post(reverse("admin:logout"), REMOTE_ADDR="192.0.2.4")

    known, unknown = events(AuditAction.STAFF_SIGN_IN_FAILED)
    assert (known.actor_type, known.actor, known.target_id) == ("staff", "support", "support")
    assert known.details["client_address"] == "192.0.2.1"
    assert (unknown.actor, unknown.target_id) == ("", "")
    assert unknown.details["client_address"] == "192.0.2.2"
    (signed_in_event,) = events(AuditAction.STAFF_SIGNED_IN)
    assert (signed_in_event.actor_type, signed_in_event.actor) == ("staff", "support")
    assert signed_in_event.details == {"client_address": "192.0.2.3", "second_factor": "totp"}
    (signed_out,) = events(AuditAction.STAFF_SIGNED_OUT)
    assert (signed_out.actor, signed_out.details["client_address"]) == ("support", "192.0.2.4")
    everything = json.dumps([[e.actor, e.target_id, e.details] for e in AuditEvent.objects.all()])
    for secret in ["not the password", "guess", PASSWORD, "nobody"]:
        assert secret not in everything


# --- History: the audit timeline -----------------------------------------------------------------


def test_history_shows_the_objects_audit_events(support: Client, world: World) -> None:
    services.revoke_api_key(api_key=world.key, actor=Actor.staff("keyadmin"))
    user_page = support.get(reverse("admin:accounts_linkeduser_history", args=[world.user.pk]))
    assert user_page.status_code == 200
    timeline = user_page.content.decode()
    assert "User Created" in timeline
    assert world.phone.install_id in timeline  # the creating device, as the actor
    assert "Key Revoked" not in timeline

    key_page = support.get(reverse("admin:accounts_apikey_history", args=[world.key.pk])).text
    assert "Key Revoked" in key_page
    assert "keyadmin" in key_page
    assert "User Created" not in key_page
    assert f"?q={world.key.key_id}" in key_page
    assert not LogEntry.objects.exists()

    code_page = support.get(reverse("admin:accounts_authcode_history", args=[world.code.pk])).text
    assert "has none of its own" in code_page


def test_a_staff_accounts_history_shows_its_sign_ins_and_edits(
    root: Client, superuser: User, support_user: User
) -> None:
    sign_in("support", "wrong password")
    LogEntry.objects.log_actions(
        user_id=superuser.pk, queryset=[support_user], action_flag=CHANGE, change_message="Hi."
    )
    page = root.get(reverse("admin:auth_user_history", args=[support_user.pk])).text
    assert "Staff Sign-In Failed" in page
    assert "198.51.100.1" in page
    assert "Hi." in page


def test_history_needs_the_permission_to_view_audit_events(support_user, world: World) -> None:
    support_user.groups.clear()
    support_user.user_permissions.add(Permission.objects.get(codename="view_linkeduser"))
    page = logged_in(support_user).get(
        reverse("admin:accounts_linkeduser_history", args=[world.user.pk])
    )
    assert page.status_code == 200
    assert "User Created" not in page.text
    assert "needs the permission" in page.text
