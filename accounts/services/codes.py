"""Authentication codes: issuance (which creates or restores the user) and the sweep."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Subquery
from django.utils import timezone

from accounts import crypto
from accounts.models import (
    ApiKey,
    AuthCode,
    AuthCodeStatus,
    UserStatus,
)
from accounts.services._clock import whole_seconds
from accounts.services.activity import roll_up_activity
from portal.db import rows
from portal.errors import DomainError, ErrorCode

log = logging.getLogger("portal.accounts")


@dataclass(frozen=True)
class IssuedCode:
    code: str
    """The secret itself: returned once, only its digest is stored."""
    code_id: int
    """The stored code's primary key."""
    expires_at: dt.datetime
    user_id: str
    existing_user: bool


# Insert-or-get that survives concurrent first requests: the conflict target is the partial
# unique index on (app, external_id) of live users, and the no-op update makes the existing row
# come back through RETURNING, locked to the end of the transaction. A user id we generated
# coming back means the row is new. A user deleted meanwhile has left that index, so the insert
# makes a brand-new user; a deletion coming later waits for the lock, then voids the code.
_UPSERT_USER = """
    INSERT INTO accounts_linkeduser (user_id, app_id, external_id, status, created_at)
    VALUES (%(new_user_id)s, %(app)s, %(external_id)s, %(pending)s, %(now)s)
    ON CONFLICT (app_id, external_id) WHERE NOT (status = 'deleted')
    DO UPDATE SET external_id = excluded.external_id
    RETURNING id, user_id, disabled_at
"""
# PostgreSQL: the upsert and the code's insert in one statement, so one round trip and one
# commit; the insert reads the upsert's RETURNING row and skips a disabled user.
_ISSUE = f"""
    WITH linked AS ({_UPSERT_USER}),
    code AS (
        INSERT INTO accounts_authcode
            (code_digest, app_id, user_id, api_key_id, status, created_at, expires_at,
             redeemed_install_id)
        SELECT %(digest)s, %(app)s, id, %(key)s, %(issued)s, %(now)s, %(expires_at)s, ''
        FROM linked WHERE disabled_at IS NULL
        RETURNING id
    )
    SELECT linked.id, linked.user_id, linked.disabled_at, code.id
    FROM linked LEFT JOIN code ON true
"""  # noqa: S608 (built from a constant, not from input)


def issue_auth_code(
    *, api_key: ApiKey, external_id: str, now: dt.datetime | None = None
) -> IssuedCode:
    """Creates the user on the first code for an external id, restores it on later ones.

    On PostgreSQL one statement and no transaction around it, so issuance costs two round
    trips with the key check. SQLite, which knows no INSERT in WITH, runs the two parts in one
    transaction; writing one at a time, it lets nothing come between them.
    """
    now = now or timezone.now()
    code = crypto.new_secret()
    new_user_id = crypto.public_id()
    expires_at = whole_seconds(now) + dt.timedelta(seconds=settings.AUTH_CODE_TTL_SECONDS)
    params = {
        "new_user_id": new_user_id,
        "app": api_key.app_id,
        "external_id": external_id,
        "pending": UserStatus.PENDING,
        "now": now,
        "digest": crypto.digest(code),
        "key": api_key.pk,
        "issued": AuthCodeStatus.ISSUED,
        "expires_at": expires_at,
    }
    code_id = None
    with rows.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_ISSUE, params)
            user_pk, user_id, disabled_at, code_id = cursor.fetchone()
        else:
            with transaction.atomic():
                cursor.execute(_UPSERT_USER, params)
                user_pk, user_id, disabled_at = cursor.fetchone()
                if disabled_at is None:
                    code_id = AuthCode.objects.create(
                        code_digest=params["digest"],
                        app_id=api_key.app_id,
                        user_id=user_pk,
                        api_key_id=api_key.pk,
                        created_at=now,
                        expires_at=expires_at,
                    ).pk
    if disabled_at is not None:
        raise DomainError(ErrorCode.USER_DISABLED)
    return IssuedCode(
        code=code,
        code_id=code_id,
        expires_at=expires_at,
        user_id=user_id,
        existing_user=user_id != new_user_id,
    )


@dataclass(frozen=True)
class SweepResult:
    expired: int
    purged: int


def sweep_auth_codes(
    *,
    now: dt.datetime | None = None,
    batch_size: int | None = None,
    retention: dt.timedelta | None = None,
) -> SweepResult:
    """Deletes codes that expired longer than the retention period ago, then marks the
    remaining expired ones `expired`. Both in bounded batches, each its own short statement
    driven by an index on expires_at: no table lock, no rows loaded into Python. Redemption
    checks expires_at itself, so it is right whether or not this has run. First the codes
    are added to the daily activity counts (`roll_up_activity`), and only counted ones are
    purged."""
    now = now or timezone.now()
    batch_size = batch_size or settings.AUTH_CODE_SWEEP_BATCH_SIZE
    retention = settings.AUTH_CODE_RETENTION if retention is None else retention
    purge_until = min(now - retention, roll_up_activity(now=now))

    def in_batches(step: Callable[[], int]) -> int:
        total = 0
        while (done := step()) > 0:
            total += done
            if done < batch_size:
                break
        return total

    def purge_batch() -> int:
        batch = AuthCode.objects.filter(expires_at__lte=purge_until).order_by("expires_at")
        deleted, _ = AuthCode.objects.filter(
            pk__in=Subquery(batch.values("pk")[:batch_size])
        ).delete()
        return deleted

    def expire_batch() -> int:
        # Row locks taken by the batch's own SELECT (rechecking its filter on rows that changed
        # meanwhile) make repeating the filter outside unnecessary; SKIP LOCKED lets a second
        # sweep running at once take other rows instead of waiting.
        batch = (
            AuthCode.objects.filter(status=AuthCodeStatus.ISSUED, expires_at__lte=now)
            .order_by("expires_at")
            .select_for_update(skip_locked=True)
            .values("pk")[:batch_size]
        )
        with transaction.atomic(savepoint=False):
            return AuthCode.objects.filter(pk__in=Subquery(batch)).update(
                status=AuthCodeStatus.EXPIRED
            )

    purged = in_batches(purge_batch)
    expired = in_batches(expire_batch)
    return SweepResult(expired=expired, purged=purged)
