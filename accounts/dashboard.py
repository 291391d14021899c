"""Reads for the staff dashboard: bounded in time and served by indexes, so they cost the
same with a thousand rows or a billion."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from django.db import connection
from django.db.models import Case, Count, Q, When
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from accounts.models import (
    ActivityMark,
    ApiKey,
    AuditEvent,
    AuthCode,
    AuthCodeStatus,
    DailyActivity,
)
from accounts.selectors import api_keys_with_rotation
from accounts.services.activity import COUNTERS, EPOCH, FIRST_REDEMPTIONS
from portal.db import rows


@dataclass(frozen=True)
class CodeActivity:
    hours: list[dt.datetime]
    """The start of each hour (UTC), oldest first; the last one is the current hour."""
    issued: list[int]
    redeemed: list[int]
    expired: list[int]
    """Expired unredeemed (voided codes of deleted users are not counted)."""


def code_activity(*, now: dt.datetime | None = None, hours: int = 24) -> CodeActivity:
    """Codes issued, redeemed and expired per hour, in one pass over the codes. A code is
    redeemed before it expires and expires after it is issued, so every code counted expires
    after the first hour's start: that range of the expires_at index bounds the read."""
    now = (now or timezone.now()).astimezone(dt.UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    starts = [current - dt.timedelta(hours=back) for back in range(hours - 1, -1, -1)]
    expired = Q(expires_at__lte=now, status__in=[AuthCodeStatus.ISSUED, AuthCodeStatus.EXPIRED])
    rows = (
        AuthCode.objects.filter(expires_at__gt=starts[0])
        .values(
            issued=TruncHour("created_at", tzinfo=dt.UTC),
            redeemed=TruncHour("redeemed_at", tzinfo=dt.UTC),
            expired=TruncHour(Case(When(expired, then="expires_at")), tzinfo=dt.UTC),
        )
        .annotate(n=Count("*"))
        .order_by()
    )
    counts = {"issued": Counter(), "redeemed": Counter(), "expired": Counter()}
    for row in rows:
        for series, counter in counts.items():
            counter[row[series]] += row["n"]
    return CodeActivity(
        hours=starts,
        **{series: [counter[start] for start in starts] for series, counter in counts.items()},
    )


def keys_expiring_soon(
    *,
    now: dt.datetime | None = None,
    within: dt.timedelta = dt.timedelta(days=14),
    limit: int = 50,
    app_id: int | None = None,
) -> list[ApiKey]:
    """Unrevoked keys (of one app, with `app_id`) that expire within `within`, soonest first,
    annotated with `rotated` (a rotated key expiring is its grace period ending, on purpose)."""
    now = now or timezone.now()
    keys = ApiKey.objects.filter(
        revoked_at__isnull=True, expires_at__gt=now, expires_at__lte=now + within
    )
    if app_id is not None:
        keys = keys.filter(app_id=app_id)
    return list(api_keys_with_rotation(keys).order_by("expires_at")[:limit])


@dataclass(frozen=True)
class AppActivity:
    days: list[dt.date]
    """UTC days, oldest first; the last one is today."""
    codes_issued: list[int]
    codes_redeemed: list[int]
    users_new: list[int]
    users_restored: list[int]

    def total(self, name: str) -> int:
        return sum(getattr(self, name))

    @property
    def redemption_rate(self) -> float | None:
        """Codes redeemed per code issued over the days shown; None without codes."""
        issued = self.total("codes_issued")
        return self.total("codes_redeemed") / issued if issued else None


# The counts rolled up and how far they go, in one statement so that both come from one
# snapshot (a roll-up committing in between would otherwise count its range twice).
_ROLLED_UP = f"""
    SELECT m.counted_until, {rows.columns(DailyActivity, "d")}
    FROM accounts_activitymark m
    LEFT JOIN accounts_dailyactivity d ON d.app_id = %s AND d.day >= %s
    WHERE m.id = 1
"""  # noqa: S608 (column names from the model)


def app_activity(*, app_id: int, now: dt.datetime | None = None, days: int = 30) -> AppActivity:
    """One app's codes issued and redeemed and users new and restored per UTC day, exact: the
    days `roll_up_activity` counted, plus what happened since, counted from the codes (by the
    expires_at index: the codes that expired since the mark and those still valid) and the
    audit events (by the audit_app_action index). Three statements, whatever the history."""
    now = (now or timezone.now()).astimezone(dt.UTC)
    today = now.date()
    day_list = [today - dt.timedelta(days=back) for back in range(days - 1, -1, -1)]
    counts = {name: dict.fromkeys(day_list, 0) for name in COUNTERS}

    def add(name: str, day: dt.date | None, n: int) -> None:
        if day in counts[name]:
            counts[name][day] += n

    mark = EPOCH
    with connection.cursor() as cursor:
        cursor.execute(_ROLLED_UP, [app_id, day_list[0]])
        found = cursor.fetchall()
    for counted_until, *values in found:
        mark = rows.instance(ActivityMark, [1, counted_until]).counted_until
        if values[0] is not None:
            row = rows.instance(DailyActivity, values)
            for name in COUNTERS:
                add(name, row.day, getattr(row, name))
    codes = (
        AuthCode.objects.filter(expires_at__gt=mark, app_id=app_id)
        .values(
            issued=TruncDate("created_at", tzinfo=dt.UTC),
            redeemed=TruncDate("redeemed_at", tzinfo=dt.UTC),
        )
        .annotate(n=Count("*"))
        .order_by()
    )
    for row in codes:
        add("codes_issued", row["issued"], row["n"])
        add("codes_redeemed", row["redeemed"], row["n"])
    events = (
        AuditEvent.objects.filter(
            app_id=app_id, action__in=list(FIRST_REDEMPTIONS), occurred_at__gt=mark
        )
        .values("action", day=TruncDate("occurred_at", tzinfo=dt.UTC))
        .annotate(n=Count("*"))
        .order_by()
    )
    for row in events:
        add(FIRST_REDEMPTIONS[row["action"]], row["day"], row["n"])
    return AppActivity(days=day_list, **{name: list(counts[name].values()) for name in COUNTERS})
