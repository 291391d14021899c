"""Failed console sign-ins, counted per account and per client address.

A small counter of our own in the database rather than django-axes: axes is set up for the
staff admin only (`AXES_ONLY_ADMIN_SITE`, its lockout page, its username digest for staff
names), and widening it would change what staff see. Here a wrong password and a wrong
authenticator or recovery code are each one failure against the account (the e-mail typed)
and one against the address (for IPv6, its /64); `CONSOLE_SIGN_IN_FAILURE_LIMIT` failures
within `CONSOLE_LOCKOUT_MINUTES` lock that account or address for that many minutes from the one
that reached the limit. While locked nothing is checked or counted, so a locked sign-in costs
one query and cannot fill the table. Both keys are keyed digests: neither the typed e-mail
(perhaps a password typed in the wrong field) nor the address is kept.

An attempt counts as a failure from its start (`begin`), before the slow password check, and
stops counting only once it succeeded: guesses sent all at once are each counted before any of
them is checked, so no more than the limit are checked, however many arrive together.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from accounts.audit import Actor
from accounts.crypto import keyed_digest
from accounts.models import AuditAction
from console.models import SignInFailure
from console.services.events import person_event
from portal.errors import DomainError, ErrorCode

_PURPOSE = "console.sign_in_failures"
log = logging.getLogger("portal.console")


def window() -> dt.timedelta:
    return dt.timedelta(minutes=settings.CONSOLE_LOCKOUT_MINUTES)


def _network(address: str) -> str:
    """What a client's failures are counted against: its IPv4 address, or its IPv6 /64 (one
    subscriber commonly holds a whole /64, a new address for every guess)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def _keys(email: str, address: str) -> list[str]:
    return [
        keyed_digest(f"account:{email.strip().lower()}", purpose=_PURPOSE),
        keyed_digest(f"address:{_network(address)}", purpose=_PURPOSE),
    ]


def _lockout_error(until: dt.datetime, now: dt.datetime) -> DomainError:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    return DomainError(
        ErrorCode.RATE_LIMITED,
        f"Too many failed sign-ins: signing in is locked for {minutes} more "
        f"minute{'s' if minutes != 1 else ''}. Wait, or reset your password if you forgot it.",
        headers={"Retry-After": str(math.ceil((until - now).total_seconds()))},
    )


@dataclass(frozen=True)
class Attempt:
    """A sign-in step under way, counted as a failure (its `rows`) until it succeeds."""

    email: str
    address: str
    rows: tuple[int, ...]


def ensure_not_locked(*, email: str, address: str) -> None:
    """Raises DomainError(RATE_LIMITED) while the account or the address is locked."""
    now = timezone.now()
    last = SignInFailure.objects.filter(
        key__in=_keys(email, address), locks=True, failed_at__gt=now - window()
    ).aggregate(last=Max("failed_at"))["last"]
    if last is not None:
        raise _lockout_error(last + window(), now)


def begin(*, email: str, address: str) -> Attempt:
    """Raises DomainError(RATE_LIMITED) while the account or the address is locked, or when the
    attempts under way already take what is left of the limit; otherwise counts this one as a
    failure of both (committed before anything is checked) until `succeeded` says otherwise."""
    ensure_not_locked(email=email, address=address)
    now = timezone.now()
    keys = _keys(email, address)
    rows = SignInFailure.objects.bulk_create(SignInFailure(key=key, failed_at=now) for key in keys)
    attempt = Attempt(email=email, address=address, rows=tuple(row.pk for row in rows))
    if _full(keys, now - window(), over=True):
        succeeded(attempt)  # refused unchecked: it does not count
        raise _lockout_error(now + window(), now)
    return attempt


def _full(keys: list[str], cutoff: dt.datetime, *, over: bool = False) -> list[str]:
    """The keys with the limit of failures since `cutoff` (`over`: more than the limit)."""
    counts = (
        SignInFailure.objects.filter(key__in=keys, failed_at__gt=cutoff)
        .values("key")
        .annotate(count=Count("pk"))
    )
    limit = settings.CONSOLE_SIGN_IN_FAILURE_LIMIT + (1 if over else 0)
    return [c["key"] for c in counts if c["count"] >= limit]


def succeeded(attempt: Attempt) -> None:
    """The attempt's check passed: it is no failure."""
    SignInFailure.objects.filter(pk__in=attempt.rows).delete()


def record_failure(*, attempt: Attempt, known_email: str | None) -> None:
    """The attempt failed: it stays counted against the account and the address; audits it
    (naming the account only when it is a console person's, `known_email`) and, when it
    reaches the limit, audits the lockout and raises its DomainError."""
    now = timezone.now()
    cutoff = now - window()
    keys = _keys(attempt.email, attempt.address)
    address = attempt.address
    actor = Actor.console(known_email or "")
    with transaction.atomic():
        SignInFailure.objects.filter(failed_at__lte=cutoff).delete()
        full = _full(keys, cutoff)
        person_event(
            AuditAction.CONSOLE_SIGN_IN_FAILED,
            email=known_email or "",
            actor=actor,
            client_address=address,
        )
        if full:
            SignInFailure.objects.filter(pk__in=attempt.rows, key__in=full).update(locks=True)
            person_event(
                AuditAction.CONSOLE_LOCKED_OUT,
                email=known_email or "",
                actor=actor,
                client_address=address,
                minutes=settings.CONSOLE_LOCKOUT_MINUTES,
                locked="account" if keys[0] in full else "address",
            )
    if full:
        raise _lockout_error(now + window(), now)


def forget_account_failures(*, email: str) -> None:
    """After a complete sign-in, the account's earlier slips no longer count (the address's
    still do)."""
    SignInFailure.objects.filter(key=_keys(email, "")[0]).delete()


_RESET_PURPOSE = "console.password_reset_mails"
_RESET_PERIOD_SECONDS = 3600


def reset_mail_allowed(*, email: str, address: str) -> bool:
    """Whether a password-reset mail may go out: at most CONSOLE_RESET_MAILS_PER_HOUR for one
    account and CONSOLE_RESET_MAILS_PER_ADDRESS_HOUR asked from one client address, so nobody
    can fill a person's mailbox (or make the portal a mail cannon). Counted in the cache by
    keyed digests; protective only, so a cache that fails lets the mail go."""
    limits = (settings.CONSOLE_RESET_MAILS_PER_HOUR, settings.CONSOLE_RESET_MAILS_PER_ADDRESS_HOUR)
    keys = [
        keyed_digest(f"account:{email.strip().lower()}", purpose=_RESET_PURPOSE),
        keyed_digest(f"address:{_network(address)}", purpose=_RESET_PURPOSE),
    ]
    try:
        counts = []
        for key in keys:
            cache.add(key, 0, timeout=_RESET_PERIOD_SECONDS)
            counts.append(cache.incr(key))
    except Exception:
        log.warning("password-reset mail limit not checked: the cache failed", exc_info=True)
        return True
    return all(count <= limit for count, limit in zip(counts, limits, strict=True))
