"""The authentication-code sweep: boundaries, batches, and what redemption does meanwhile."""

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts import services
from accounts.models import AuthCode, AuthCodeStatus
from portal.celery import app as celery_app
from tests.factories import AuthCodeFactory, LinkedUserFactory
from tests.helpers import redeem

pytestmark = pytest.mark.django_db

RETENTION = dt.timedelta(days=7)
ROLL_UP = 7
"""The daily activity's roll-up before the purge (accounts.services.activity), inside a test's
transaction: savepoint, mark lock, codes, events, counts, mark, release."""


@pytest.fixture
def now():
    return timezone.now()


def _code(user, now, age: dt.timedelta, status=AuthCodeStatus.ISSUED) -> AuthCode:
    """A code that expired `age` ago (negative: still valid)."""
    return AuthCodeFactory(user=user, expires_at=now - age, status=status)


def test_boundaries(now):
    user = LinkedUserFactory()
    valid = _code(user, now, -dt.timedelta(seconds=1))
    just_expired = _code(user, now, dt.timedelta(0))
    redeemed_recently = _code(user, now, dt.timedelta(days=1), AuthCodeStatus.REDEEMED)
    within_retention = _code(user, now, RETENTION - dt.timedelta(seconds=1))
    past_retention = _code(user, now, RETENTION)
    redeemed_long_ago = _code(user, now, RETENTION + dt.timedelta(days=1), AuthCodeStatus.REDEEMED)

    result = services.sweep_auth_codes(now=now, retention=RETENTION)

    assert (result.expired, result.purged) == (2, 2)
    remaining = dict(AuthCode.objects.values_list("pk", "status"))
    assert remaining == {
        valid.pk: AuthCodeStatus.ISSUED,
        just_expired.pk: AuthCodeStatus.EXPIRED,
        redeemed_recently.pk: AuthCodeStatus.REDEEMED,
        within_retention.pk: AuthCodeStatus.EXPIRED,
    }
    assert past_retention.pk not in remaining
    assert redeemed_long_ago.pk not in remaining


def test_batches_cover_everything(now, django_assert_max_num_queries):
    user = LinkedUserFactory()
    for _ in range(7):
        _code(user, now, dt.timedelta(hours=1))
        _code(user, now, RETENTION + dt.timedelta(hours=1))

    # batches of 3: 3 + 3 + 1 deletions, 3 + 3 + 1 updates, each its own statement
    with django_assert_max_num_queries(ROLL_UP + 6):
        result = services.sweep_auth_codes(now=now, retention=RETENTION, batch_size=3)

    assert (result.expired, result.purged) == (7, 7)
    assert set(AuthCode.objects.values_list("status", flat=True)) == {AuthCodeStatus.EXPIRED}
    assert services.sweep_auth_codes(now=now, retention=RETENTION) == services.SweepResult(0, 0)


def test_a_batch_is_one_statement(now, django_assert_num_queries):
    user = LinkedUserFactory()
    _code(user, now, dt.timedelta(hours=1))
    _code(user, now, RETENTION + dt.timedelta(hours=1))
    with django_assert_num_queries(ROLL_UP + 2) as captured:
        services.sweep_auth_codes(now=now, retention=RETENTION)
    sql = [query["sql"] for query in captured.captured_queries][ROLL_UP:]
    assert sql[0].startswith("DELETE") and "LIMIT" in sql[0]
    assert sql[1].startswith("UPDATE") and "LIMIT" in sql[1]


@pytest.mark.parametrize("swept", [False, True])
def test_redemption_is_right_with_or_without_the_sweep(api, now, swept):
    user = LinkedUserFactory()
    expired = _code(user, now, dt.timedelta(seconds=1))
    valid = _code(user, now, -dt.timedelta(minutes=5))
    if swept:
        services.sweep_auth_codes()
    assert redeem(api, expired.code, user.app.app_id).json()["errorCode"] == "AUTH_CODE_EXPIRED"
    assert redeem(api, valid.code, user.app.app_id).status_code == 201


def test_the_command(now):
    user = LinkedUserFactory()
    _code(user, now, dt.timedelta(hours=1))
    out = StringIO()
    call_command("expire_auth_codes", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"expired": 1, "purged": 0}


def test_the_beat_schedule_holds_the_three_jobs():
    celery_app.loader.import_default_modules()  # the tasks register when autodiscovered
    schedule = {
        entry["task"]: entry["schedule"] for entry in celery_app.conf.beat_schedule.values()
    }
    assert schedule["accounts.tasks.sweep_auth_codes"] == 60.0
    assert "accounts.tasks.sweep_deletion_requests" in schedule
    daily = schedule["accounts.tasks.send_key_expiry_notices"]
    assert daily.remaining_estimate(timezone.now()) <= dt.timedelta(days=1)
    for name in schedule:
        assert name in celery_app.tasks, f"{name} is scheduled but not registered"
        assert celery_app.tasks[name].acks_late
