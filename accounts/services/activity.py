"""The per-app daily counts of codes and first redemptions (`DailyActivity`), kept up by the
code sweep rather than by issuance or redemption, which stay as fast as without them."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db import connection, transaction
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import ActivityMark, AuditAction, AuditEvent, AuthCode, DailyActivity
from portal.db import rows

SETTLED_AFTER = dt.timedelta(minutes=1)
"""A code that expired this long ago can no longer change (redemption needs `expires_at >
now` and commits within its statement timeouts), and an event that occurred this long ago is
committed: both can be counted for good."""

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""Where counting starts: with every code and event still there."""
FIRST_REDEMPTIONS = {
    AuditAction.USER_CREATED: "users_new",
    AuditAction.USER_RESTORED: "users_restored",
}
COUNTERS = ("codes_issued", "codes_redeemed", "users_new", "users_restored")

_ADD = """
    INSERT INTO {table}
        (app_id, day, codes_issued, codes_redeemed, users_new, users_restored)
    VALUES {values}
    ON CONFLICT (app_id, day) DO UPDATE SET {sums}
"""


def roll_up_activity(*, now: dt.datetime | None = None) -> dt.datetime:
    """Adds to `DailyActivity` the codes that expired, and the first redemptions that occurred,
    since the last roll-up until SETTLED_AFTER ago, and moves `ActivityMark` there, in one
    transaction (under the mark's row lock, so two sweeps at once count nothing twice).
    Each range is read by an index on its time (expires_at, occurred_at) and added up by the
    database: a minute's worth at each run of the sweep. Returns the new mark: codes that
    expired after it are not counted yet and must not be purged."""
    now = now or timezone.now()
    until = now - SETTLED_AFTER
    with transaction.atomic():
        since = _locked_mark()
        if until <= since:
            return since
        sums: dict[tuple[int, dt.date], dict[str, int]] = defaultdict(_zeros)
        codes = (
            AuthCode.objects.filter(expires_at__gt=since, expires_at__lte=until)
            .values(
                "app_id",
                issued=TruncDate("created_at", tzinfo=dt.UTC),
                redeemed=TruncDate("redeemed_at", tzinfo=dt.UTC),
            )
            .annotate(n=Count("*"))
            .order_by()
        )
        for row in codes:
            sums[row["app_id"], row["issued"]]["codes_issued"] += row["n"]
            if row["redeemed"] is not None:
                sums[row["app_id"], row["redeemed"]]["codes_redeemed"] += row["n"]
        events = (
            AuditEvent.objects.filter(
                occurred_at__gt=since,
                occurred_at__lte=until,
                action__in=list(FIRST_REDEMPTIONS),
                app__isnull=False,
            )
            .values("app_id", "action", day=TruncDate("occurred_at", tzinfo=dt.UTC))
            .annotate(n=Count("*"))
            .order_by()
        )
        for row in events:
            sums[row["app_id"], row["day"]][FIRST_REDEMPTIONS[row["action"]]] += row["n"]
        if sums:
            _add(sums)
        ActivityMark.objects.filter(pk=1).update(counted_until=until)
    return until


def _locked_mark() -> dt.datetime:
    """The mark, locked to the end of the transaction, in one statement whether or not its row
    exists (the migration makes it; a flush of the tables removes it)."""
    table = connection.ops.quote_name(ActivityMark._meta.db_table)
    row = rows.fetch_one(
        f"INSERT INTO {table} (id, counted_until) VALUES (1, %s) "  # noqa: S608 (model's table)
        f"ON CONFLICT (id) DO UPDATE SET counted_until = {table}.counted_until "
        f"RETURNING {rows.columns(ActivityMark, table)}",
        [EPOCH],
    )
    return rows.instance(ActivityMark, row).counted_until


def _zeros() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


def _add(sums: dict[tuple[int, dt.date], dict[str, int]]) -> None:
    """One upsert adding every (app, day)'s counts to what is already there."""
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(sums))
    params: list[object] = []
    for (app_id, day), counts in sums.items():
        params += [app_id, day, *(counts[name] for name in COUNTERS)]
    table = DailyActivity._meta.db_table
    added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in COUNTERS)
    with connection.cursor() as cursor:
        cursor.execute(_ADD.format(table=table, values=values, sums=added), params)
