"""The per-app daily activity: rolled up by the code sweep, exact whether a code was counted
by the roll-up, is still in the table, or was purged after being counted."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from accounts import services
from accounts.dashboard import app_activity
from accounts.models import (
    ActorType,
    AuditAction,
    AuditEvent,
    AuthCode,
    AuthCodeStatus,
    DailyActivity,
)
from tests.factories import AppFactory, AuthCodeFactory, LinkedUserFactory

pytestmark = pytest.mark.django_db

RETENTION = dt.timedelta(days=7)


def make_history(app, now: dt.datetime) -> dict[str, int]:
    """Codes and first redemptions over 40 days (some outside the 30 shown); returns what the
    last 30 days hold."""
    user = LinkedUserFactory(app=app)
    expected = {"issued": 0, "redeemed": 0, "new": 0, "restored": 0}
    for back in range(0, 40 * 24, 7):  # every 7 hours
        created = now - dt.timedelta(hours=back)
        redeemed = back % 2 == 0
        AuthCodeFactory(
            user=user,
            created_at=created,
            expires_at=created + dt.timedelta(minutes=10),
            status=AuthCodeStatus.REDEEMED if redeemed else AuthCodeStatus.ISSUED,
            redeemed_at=created + dt.timedelta(minutes=1) if redeemed else None,
        )
        action = AuditAction.USER_CREATED if back % 3 == 0 else AuditAction.USER_RESTORED
        AuditEvent.objects.create(
            app=app,
            occurred_at=created,
            actor_type=ActorType.DEVICE,
            actor="i",
            action=action,
            target_type="user",
            target_id=user.user_id,
        )
        in_range = created.date() > (now - dt.timedelta(days=30)).date()
        redeemed_in_range = (
            redeemed
            and (created + dt.timedelta(minutes=1)).date() > (now - dt.timedelta(days=30)).date()
        )
        expected["issued"] += in_range
        expected["redeemed"] += redeemed_in_range
        expected["new" if action == AuditAction.USER_CREATED else "restored"] += in_range
    return expected


def totals(app, now: dt.datetime) -> dict[str, int]:
    activity = app_activity(app_id=app.pk, now=now)
    return {
        "issued": activity.total("codes_issued"),
        "redeemed": activity.total("codes_redeemed"),
        "new": activity.total("users_new"),
        "restored": activity.total("users_restored"),
    }


def test_exact_before_and_after_the_roll_up_and_the_purge(django_assert_max_num_queries) -> None:
    now = timezone.now()
    app, other = AppFactory(), AppFactory()
    expected = make_history(app, now)
    make_history(other, now)
    with django_assert_max_num_queries(3):
        assert totals(app, now) == expected  # nothing rolled up yet: all from the tables
    services.sweep_auth_codes(now=now, retention=RETENTION)  # rolls up, then purges
    assert AuthCode.objects.count() < 2 * 40 * 24 // 7  # old codes are gone...
    assert DailyActivity.objects.filter(app=app).exists()
    assert totals(app, now) == expected  # ...and counted
    services.sweep_auth_codes(now=now + dt.timedelta(seconds=30), retention=RETENTION)
    assert totals(app, now) == expected  # a second run counts nothing twice


def test_per_day_and_rate() -> None:
    now = timezone.now().replace(hour=12)
    app = AppFactory()
    user = LinkedUserFactory(app=app)
    yesterday = now - dt.timedelta(days=1)
    for created, redeemed in [(now, True), (now, False), (yesterday, True), (yesterday, True)]:
        AuthCodeFactory(
            user=user,
            created_at=created,
            expires_at=created + dt.timedelta(minutes=10),
            status=AuthCodeStatus.REDEEMED if redeemed else AuthCodeStatus.ISSUED,
            redeemed_at=created if redeemed else None,
        )
    services.roll_up_activity(now=now)
    activity = app_activity(app_id=app.pk, now=now)
    assert activity.days[-1] == now.date() and len(activity.days) == 30
    assert (activity.codes_issued[-2:], activity.codes_redeemed[-2:]) == ([2, 2], [2, 1])
    assert activity.redemption_rate == 0.75


def test_codes_not_yet_counted_are_not_purged() -> None:
    now = timezone.now()
    code = AuthCodeFactory(expires_at=now - dt.timedelta(days=10))
    services.sweep_auth_codes(now=now, retention=dt.timedelta(0))
    assert not AuthCode.objects.filter(pk=code.pk).exists()
    recent = AuthCodeFactory(expires_at=now - dt.timedelta(seconds=10))
    services.sweep_auth_codes(now=now, retention=dt.timedelta(0))
    # expired 10 s ago: not settled, so not counted yet, so kept
    assert AuthCode.objects.filter(pk=recent.pk).exists()
    activity = app_activity(app_id=code.app_id, now=now)
    assert activity.total("codes_issued") == 1


def test_the_real_redemption_path_is_counted(api) -> None:
    from tests.factories import ApiKeyFactory
    from tests.helpers import redeem

    key = ApiKeyFactory()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key.full_key}")
    for install in ("phone-a1", "phone-a2"):
        code = api.post("/users/auth-code", {"external_id": "alice"}, format="json").json()
        assert redeem(api, code["authentication_code"], key.app.app_id, install).status_code == 201
    activity = app_activity(app_id=key.app_id)
    assert activity.total("codes_issued") == 2 and activity.total("codes_redeemed") == 2
    assert (activity.total("users_new"), activity.total("users_restored")) == (1, 1)
    services.roll_up_activity(now=timezone.now() + dt.timedelta(hours=1))
    activity = app_activity(app_id=key.app_id, now=timezone.now() + dt.timedelta(hours=1))
    assert (activity.total("users_new"), activity.total("users_restored")) == (1, 1)
