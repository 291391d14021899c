"""The console's security settings and the promise that no secret outlives its one showing:
headers, the session cookie, idle expiry, password reset by e-mail, and what the logs and the
database hold after every flow that makes a secret."""

from __future__ import annotations

import logging
import re
import time

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent
from console.models import Role
from console.services import team, two_factor
from portal import sessions
from tests.console.people import (
    PASSWORD,
    code,
    code_from_secret,
    code_step,
    enrolled,
    password_step,
    signed_in,
)
from tests.factories import AppFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def test_console_answers_carry_the_security_headers() -> None:
    response = Client().get(reverse("console:sign_in"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]
    assert "<script" not in response.content.decode()  # nothing inline for the policy to stop


def test_the_api_gets_no_console_policy() -> None:
    response = Client().get("/healthz")
    assert "Content-Security-Policy" not in response


def test_the_session_cookie_is_http_only_lax_and_lives_twelve_idle_hours() -> None:
    client = Client()
    password_step(client, MembershipFactory().user.email)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == 12 * 3600
    assert settings.SESSION_COOKIE_AGE == 12 * 3600


def test_a_used_session_is_pushed_back_at_most_every_few_minutes(monkeypatch) -> None:
    membership = MembershipFactory()
    client = signed_in(membership.user)
    key = client.session.session_key
    first = Session.objects.get(session_key=key).expire_date
    client.get(reverse("console:account"))
    assert Session.objects.get(session_key=key).expire_date == first  # no write per request
    now = time.time() + sessions.REFRESH_SECONDS + 1
    monkeypatch.setattr(sessions.time, "time", lambda: now)
    client.get(reverse("console:account"))
    assert Session.objects.get(session_key=key).expire_date > first


def test_password_reset_by_email_then_sign_in_with_the_new_password() -> None:
    person = MembershipFactory().user
    device = enrolled(person)
    client = Client()
    response = client.post(reverse("console:password_reset"), {"email": person.email})
    assert response.url == reverse("console:password_reset_done")
    [message] = mail.outbox
    assert message.to == [person.email]
    link = re.search(r"http://localhost:8000(/console/password-reset/\S+/)", message.body).group(1)
    form_url = client.get(link).url  # the token leaves the address bar at once
    assert "set-password" in form_url
    new = "a newer console passphrase"
    done = client.post(form_url, {"new_password1": new, "new_password2": new})
    assert done.url == reverse("console:password_reset_complete")
    assert "not valid any more" in Client().get(link).content.decode()  # it worked once
    fresh = Client()
    assert password_step(fresh, person.email, new).status_code == 302
    assert code_step(fresh, code(device)).status_code == 302  # 2FA still asked
    assert AuditEvent.objects.filter(
        action=AuditAction.CONSOLE_PASSWORD_CHANGED, details={"how": "reset"}
    ).exists()


def test_password_reset_mails_nobody_for_staff_or_unknown_addresses(admin_user) -> None:
    admin_user.email = "root@portal.example"
    admin_user.save()
    for email in ("root@portal.example", "nobody@customer.example"):
        response = Client().post(reverse("console:password_reset"), {"email": email})
        assert response.url == reverse("console:password_reset_done")
    assert mail.outbox == []


def test_password_reset_mails_are_limited_per_account_and_per_address(settings) -> None:
    settings.CONSOLE_RESET_MAILS_PER_HOUR = 3
    settings.CONSOLE_RESET_MAILS_PER_ADDRESS_HOUR = 5
    alice, bob = MembershipFactory().user, MembershipFactory().user
    for _ in range(4):
        response = Client().post(reverse("console:password_reset"), {"email": alice.email})
        assert response.url == reverse("console:password_reset_done")  # the same answer
    assert [message.to for message in mail.outbox] == [[alice.email]] * 3
    other = Client(REMOTE_ADDR="192.0.2.9")
    other.post(reverse("console:password_reset"), {"email": bob.email})
    assert mail.outbox[-1].to == [bob.email]  # another account from another address: sent
    for _ in range(2):  # the first address's 5th request, then its 6th: over its limit
        Client().post(reverse("console:password_reset"), {"email": bob.email})
    assert len(mail.outbox) == 5


def _database_text() -> str:
    """Every row of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(str(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_no_secret_is_kept_in_the_database_or_written_to_a_log(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    app = AppFactory()
    owner = MembershipFactory(app=app, role=Role.OWNER)
    client = signed_in(owner.user)
    secrets: list[str] = [PASSWORD]
    # An invitation, opened and accepted with a new password and a new authenticator.
    response = client.post(
        reverse("console:team_invite", args=[app.app_id]),
        {"email": "new@customer.example", "role": "viewer"},
    )
    link = re.search(r'id="invitation-url">([^<]+)<', response.content.decode()).group(1)
    token = link.rstrip("/").rsplit("/", 1)[1]
    newcomer = Client()
    new_password = "a newcomer console passphrase"
    newcomer.get(link.split("localhost:8000", 1)[1])
    newcomer.post(
        reverse("console:invitation_accept"), {"password1": new_password, "password2": new_password}
    )
    page = newcomer.get(reverse("console:second_factor")).content.decode()
    secret = re.search(r'id="console-2fa-secret" class="secret">([A-Z2-7 ]+)<', page).group(1)
    shown = newcomer.post(reverse("console:second_factor"), {"code": code_from_secret(secret)})
    recovery = re.findall(r"<code>([a-z2-9-]{14})</code>", shown.content.decode())
    assert len(recovery) == 10
    # A recovery code used, a wrong code and a wrong password typed.
    again = Client()
    password_step(again, "new@customer.example", new_password)
    code_step(again, "999999")
    code_step(again, recovery[0])
    password_step(Client(), "new@customer.example", "my-secret-guess")
    device = enrolled(owner.user)
    key = two_factor.shared_key(device)
    secrets += [token, new_password, "my-secret-guess", *recovery, key.hex()]
    secrets += [secret, secret.replace(" ", ""), *(c.replace("-", "") for c in recovery)]
    # A staff invitation too.
    staff_link = team.invite(
        app=app, email="x@customer.example", role="viewer", actor=Actor.staff("s")
    ).url
    secrets.append(staff_link.rstrip("/").rsplit("/", 1)[1])

    stored = _database_text()
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert "console/sign-in/" in logged  # the request lines were captured
    for value in secrets:
        assert value not in stored, value
        assert value not in logged, value
    # And the pages shown afterwards do not show them again.
    for path in (reverse("console:team", args=[app.app_id]), reverse("console:account")):
        page = client.get(path).content.decode()
        assert not any(value in page for value in secrets)


def test_an_opened_invitation_link_keeps_no_token_in_the_session_store() -> None:
    """Opening the link parks the invitation in the session until it is accepted (or never):
    the session row holds its digest, not the token, which is readable by decoding the row."""
    new = team.invite(
        app=AppFactory(), email="later@customer.example", role="viewer", actor=Actor.system("t")
    )
    token = new.url.rstrip("/").rsplit("/", 1)[1]
    client = Client()
    response = client.get(new.url.split("localhost:8000", 1)[1])
    assert response.url == reverse("console:invitation_accept")
    assert "later@customer.example" in client.get(response.url).content.decode()
    decoded = [str(session.get_decoded()) for session in Session.objects.all()]
    assert decoded and not any(token in text for text in decoded)
