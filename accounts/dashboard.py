"""Reads for the staff dashboard: bounded in time and served by indexes, so they cost the
same with a thousand rows or a billion."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from django.db.models import Case, Count, Q, When
from django.db.models.functions import TruncHour
from django.utils import timezone

from accounts.models import ApiKey, AuthCode, AuthCodeStatus
from accounts.selectors import api_keys_with_rotation


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
    *, now: dt.datetime | None = None, within: dt.timedelta = dt.timedelta(days=14), limit: int = 50
) -> list[ApiKey]:
    """Unrevoked keys that expire within `within`, soonest first, annotated with `rotated`
    (a rotated key expiring is its grace period ending, on purpose)."""
    now = now or timezone.now()
    keys = ApiKey.objects.filter(
        revoked_at__isnull=True, expires_at__gt=now, expires_at__lte=now + within
    )
    return list(api_keys_with_rotation(keys).order_by("expires_at")[:limit])
