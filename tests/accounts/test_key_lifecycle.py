"""Rotation, revocation, listing and expiry notices of API keys."""

import datetime as dt
import json
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.audit import Actor
from accounts.models import ApiKey, ApiKeyNotice, AuditAction, AuditEvent
from accounts.services import keys as key_services
from portal.errors import DomainError
from tests.factories import ApiKeyFactory, AppFactory
from tests.helpers import run_command as run

pytestmark = pytest.mark.django_db

OPERATOR = Actor.operator("tests")


def issue(full_key: str) -> tuple[int, str]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {full_key}")
    response = client.post("/users/auth-code", {"external_id": "alice"}, format="json")
    return response.status_code, response.json().get("errorCode", "")


def test_rotation_keeps_both_keys_working_during_the_grace_period(api_key):
    result = run("rotate_api_key", api_key.key_id, "--grace-hours", "2")

    new = ApiKey.objects.get(key_id=result["key_id"])
    assert result["old_key_id"] == api_key.key_id
    assert (new.app, new.name, new.scopes) == (api_key.app, api_key.name, api_key.scopes)
    assert new.rotated_from == api_key
    old_expiry = dt.datetime.fromisoformat(result["old_key_expires_at"])
    assert abs(old_expiry - (timezone.now() + dt.timedelta(hours=2))) < dt.timedelta(minutes=1)
    assert issue(api_key.full_key) == (200, "")
    assert issue(result["api_key"]) == (200, "")

    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now())  # grace is over
    assert issue(api_key.full_key) == (401, "API_KEY_EXPIRED")
    assert issue(result["api_key"]) == (200, "")


def test_rotation_never_extends_the_old_keys_life(app):
    key = ApiKeyFactory(app=app, expires_at=timezone.now() + dt.timedelta(hours=1))
    result = run("rotate_api_key", key.key_id, "--grace-hours", "48")
    key.refresh_from_db()
    assert key.expires_at <= timezone.now() + dt.timedelta(hours=1)
    assert dt.datetime.fromisoformat(result["old_key_expires_at"]) == key.expires_at.replace(
        microsecond=0
    )


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"revoked_at": timezone.now()}, "revoked"),
        ({"expires_at": timezone.now() - dt.timedelta(seconds=1)}, "expired"),
    ],
)
def test_dead_keys_are_not_rotated(app, state, message):
    key = ApiKeyFactory(app=app, **state)
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("rotate_api_key", key.key_id, "--json", stdout=out)
    assert message in json.loads(out.getvalue())["error"]
    assert ApiKey.objects.count() == 1


def test_a_key_is_rotated_once(api_key):
    run("rotate_api_key", api_key.key_id)
    with pytest.raises(DomainError, match="already rotated"):
        services.rotate_api_key(api_key=api_key, grace=dt.timedelta(hours=1), actor=OPERATOR)


def test_rotation_is_allowed_at_the_cap(app, settings):
    settings.MAX_ACTIVE_API_KEYS_PER_APP = 1
    key = ApiKeyFactory(app=app)
    assert run("rotate_api_key", key.key_id)["old_key_id"] == key.key_id


def test_revocation_is_immediate_and_audited(api_key):
    assert issue(api_key.full_key) == (200, "")
    result = run("revoke_api_key", api_key.key_id)
    assert result["key_id"] == api_key.key_id
    assert result["revoked_at"].endswith("Z")
    assert issue(api_key.full_key) == (401, "API_KEY_REVOKED")
    # Revocation is told apart only after the secret matched.
    wrong = f"{api_key.key_id}.{'x' * 43}"
    assert issue(wrong) == (401, "INVALID_API_KEY")
    again = run("revoke_api_key", api_key.key_id)
    assert again["revoked_at"] == result["revoked_at"]
    assert AuditEvent.objects.filter(action=AuditAction.KEY_REVOKED).count() == 1


def test_unknown_key_ids_are_clear_errors(db):
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("revoke_api_key", "0" * 16, "--json", stdout=out)
    assert exit_info.value.code == 1
    assert "no API key" in json.loads(out.getvalue())["error"]


def test_list_shows_statuses_and_never_a_secret(app):
    active = ApiKeyFactory(app=app)
    revoked = ApiKeyFactory(app=app, revoked_at=timezone.now())
    expired = ApiKeyFactory(app=app, expires_at=timezone.now())
    rotated = ApiKeyFactory(app=app)
    successor = run("rotate_api_key", rotated.key_id)["key_id"]
    ApiKeyFactory()  # another app's key

    everything = run("list_api_keys")
    result = run("list_api_keys", "--app", app.app_id)

    assert len(everything["keys"]) == 6
    statuses = {key["key_id"]: key["status"] for key in result["keys"]}
    assert statuses == {
        active.key_id: "active",
        revoked.key_id: "revoked",
        expired.key_id: "expired",
        rotated.key_id: "in grace",
        successor: "active",
    }
    text = json.dumps(everything)
    for key in ApiKey.objects.all():
        assert key.secret_digest not in text
    assert active.full_key.split(".")[1] not in text
    assert set(result["keys"][0]) == {
        "key_id", "app_id", "name", "scopes", "status",
        "created_at", "expires_at", "revoked_at", "last_used_at",
    }  # fmt: skip


def test_creating_and_rotating_keys_is_audited(app):
    created = run("create_api_key", "--app", app.app_id, "--name", "b", "--scopes", "user.link")
    run("rotate_api_key", created["key_id"])
    actions = list(
        AuditEvent.objects.filter(target_type="api_key").values_list("action", "actor_type")
    )
    assert sorted(actions) == [
        ("key.created", "operator"),
        ("key.created", "operator"),
        ("key.rotated", "operator"),
    ]


class TestExpiryNotices:
    def _key(self, days: float, **kwargs) -> ApiKey:
        return ApiKeyFactory(
            app=kwargs.pop("app", None) or AppFactory(contact_emails=["a@x.test", "b@x.test"]),
            expires_at=timezone.now() + dt.timedelta(days=days),
            **kwargs,
        )

    def test_one_mail_at_14_days_and_one_at_7_never_twice(self):
        key = self._key(13)
        assert services.send_key_expiry_notices() == 1
        assert services.send_key_expiry_notices() == 0
        assert len(mail.outbox) == 1
        message = mail.outbox[0]
        assert message.to == ["a@x.test", "b@x.test"]
        assert key.key_id in message.subject
        assert "expires in 13 days" in message.subject  # the real number, not the threshold
        assert ApiKeyNotice.objects.get().kind == "14d"

        later = timezone.now() + dt.timedelta(days=7)
        assert services.send_key_expiry_notices(now=later) == 1
        assert services.send_key_expiry_notices(now=later) == 0
        assert len(mail.outbox) == 2
        assert "expires in 6 days" in mail.outbox[1].subject
        assert set(ApiKeyNotice.objects.values_list("kind", flat=True)) == {"14d", "7d"}

    def test_no_mail_for_keys_far_from_expiry_revoked_or_rotated(self):
        self._key(30)
        self._key(10, revoked_at=timezone.now())
        rotated = self._key(10)
        services.rotate_api_key(api_key=rotated, grace=dt.timedelta(hours=1), actor=OPERATOR)
        services.send_key_expiry_notices()
        assert mail.outbox == []

    def test_a_key_close_to_expiry_gets_only_the_most_urgent_notice(self):
        self._key(0.5)
        services.send_key_expiry_notices()
        assert len(mail.outbox) == 1
        assert "expires in 1 day" in mail.outbox[0].subject
        assert list(ApiKeyNotice.objects.values_list("kind", flat=True)) == ["7d"]

    def test_a_failed_send_is_retried_next_run_and_holds_up_nobody(self, monkeypatch):
        failing = self._key(10, app=AppFactory(contact_emails=["broken@x.test"]))
        working = self._key(11)
        real_send_mail = key_services.send_mail

        def smtp_refuses_one(*args, recipient_list, **kwargs):
            if recipient_list == ["broken@x.test"]:
                raise ConnectionError("smtp refused")
            return real_send_mail(*args, recipient_list=recipient_list, **kwargs)

        monkeypatch.setattr(key_services, "send_mail", smtp_refuses_one)
        assert services.send_key_expiry_notices() == 1
        assert [n.api_key for n in ApiKeyNotice.objects.all()] == [working]
        monkeypatch.undo()
        assert services.send_key_expiry_notices() == 1
        assert {n.api_key for n in ApiKeyNotice.objects.all()} == {working, failing}
        assert len(mail.outbox) == 2

    def test_expired_keys_are_recorded_once(self):
        key = self._key(-1)
        services.send_key_expiry_notices()
        services.send_key_expiry_notices()
        events = AuditEvent.objects.filter(action=AuditAction.KEY_EXPIRED)
        assert list(events.values_list("target_id", "actor_type")) == [(key.key_id, "system")]
