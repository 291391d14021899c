"""Every write on webhooks: endpoints (create, rotate, enable/disable, change), the fan-out of
outbox events into deliveries, delivery attempts with their retries, and the log's sweep."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from accounts import audit
from accounts.audit import Actor
from accounts.lifecycle import EventType
from accounts.models import App, AuditAction
from events import crypto, http
from events.models import (
    MAX_ENDPOINTS_PER_APP,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Event,
    WebhookEndpoint,
)
from portal import metrics
from portal.errors import DomainError, ErrorCode
from portal.text import named_choices

log = logging.getLogger("portal.events")

TEST_EVENT_TYPE = "webhook.test"
"""The type of the event 'send test event' sends: never announced by the services."""
ROTATION_OVERLAP = dt.timedelta(hours=24)
RETRY_DELAYS = (30, 120, 600, 3600, 6 * 3600)
"""Seconds before the 2nd, 3rd, … attempt; every 12 hours after these."""
LATER_RETRY_DELAY = 12 * 3600
FAILURE_STREAK_GAP = dt.timedelta(days=1)
"""Longer than any retry delay: failures further apart than this are not one streak."""
JITTER = 0.2
PER_ENDPOINT_BATCH = 500
"""Due deliveries one sweep sends per endpoint (one for an endpoint that is failing: a probe)."""


def parse_event_types(raw: Iterable[str]) -> list[str]:
    """Validated event type names in the contract's order; empty means all."""
    return named_choices(raw, EventType, "event type(s)")


def _refresh_subscriptions(app_pk: int) -> None:
    """Writes App.webhook_events from the app's enabled endpoints; the caller holds the app
    lock and its transaction, so the column never disagrees with the endpoints it sums up."""
    wanted: set[str] = set()
    for types in WebhookEndpoint.objects.filter(app_id=app_pk, is_enabled=True).values_list(
        "event_types", flat=True
    ):
        wanted.update(types or EventType.values)
    App.objects.filter(pk=app_pk).update(
        webhook_events=" ".join(name for name in EventType.values if name in wanted)
    )


def _lock_app(app_pk: int) -> None:
    # NO KEY UPDATE, as every other lock on an app row: issuance's KEY SHARE never waits on it.
    App.objects.select_for_update(no_key=True).filter(pk=app_pk).first()


def _endpoint_event(
    endpoint: WebhookEndpoint,
    action: AuditAction,
    actor: Actor,
    now: dt.datetime,
    **details: object,
) -> None:
    audit.record(
        audit.event(
            actor=actor,
            action=action,
            target_type="webhook",
            target_id=endpoint.endpoint_id,
            app_id=endpoint.app_id,
            details=details,
            now=now,
        )
    )


@dataclass(frozen=True)
class NewSecret:
    endpoint: WebhookEndpoint
    secret: str
    """`whsec_…`: shown once, at creation and at each rotation."""


def create_endpoint(
    *,
    app: App,
    url: str,
    event_types: Iterable[str] = (),
    actor: Actor,
    now: dt.datetime | None = None,
) -> NewSecret:
    """A new enabled endpoint with a new signing secret; at most MAX_ENDPOINTS_PER_APP per
    app (disabled ones count: they can be enabled again)."""
    now = now or timezone.now()
    types = parse_event_types(event_types)
    http.check_url(url)
    secret = crypto.new_signing_secret()
    with transaction.atomic():
        _lock_app(app.pk)
        if WebhookEndpoint.objects.filter(app_id=app.pk).count() >= MAX_ENDPOINTS_PER_APP:
            raise DomainError(
                ErrorCode.INVALID_REQUEST,
                f"app {app.app_id} already has {MAX_ENDPOINTS_PER_APP} webhook endpoints",
            )
        endpoint = WebhookEndpoint(
            app=app,
            url=url,
            event_types=types,
            secret_encrypted=crypto.encrypt(secret),
            created_at=now,
        )
        endpoint.full_clean()
        endpoint.save()
        _refresh_subscriptions(app.pk)
        _endpoint_event(endpoint, AuditAction.WEBHOOK_CREATED, actor, now, events=types or "all")
    return NewSecret(endpoint=endpoint, secret=secret)


def update_endpoint(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Iterable[str] | None = None,
    actor: Actor,
    now: dt.datetime | None = None,
) -> WebhookEndpoint:
    """Changes the URL and/or the event types (empty: all)."""
    now = now or timezone.now()
    if url is not None:
        http.check_url(url)
    types = None if event_types is None else parse_event_types(event_types)
    with transaction.atomic():
        _lock_app(endpoint.app_id)
        locked = WebhookEndpoint.objects.select_related("app").get(pk=endpoint.pk)
        if url is not None:
            locked.url = url
        if types is not None:
            locked.event_types = types
        locked.full_clean()
        locked.save(update_fields=["url", "event_types"])
        _refresh_subscriptions(locked.app_id)
        _endpoint_event(
            locked, AuditAction.WEBHOOK_UPDATED, actor, now, events=locked.event_types or "all"
        )
    return locked


def rotate_secret(
    *, endpoint: WebhookEndpoint, actor: Actor, now: dt.datetime | None = None
) -> NewSecret:
    """A new signing secret; the current one keeps signing beside it for ROTATION_OVERLAP,
    so the receiver can switch without rejecting a single event."""
    now = now or timezone.now()
    secret = crypto.new_signing_secret()
    with transaction.atomic():
        locked = (
            WebhookEndpoint.objects.select_for_update(of=("self",))
            .select_related("app")
            .get(pk=endpoint.pk)
        )
        locked.previous_secret_encrypted = locked.secret_encrypted
        locked.previous_secret_expires_at = now + ROTATION_OVERLAP
        locked.secret_encrypted = crypto.encrypt(secret)
        locked.save(
            update_fields=[
                "secret_encrypted",
                "previous_secret_encrypted",
                "previous_secret_expires_at",
            ]
        )
        _endpoint_event(
            locked,
            AuditAction.WEBHOOK_SECRET_ROTATED,
            actor,
            now,
            previous_secret_until=locked.previous_secret_expires_at.isoformat(),
        )
    return NewSecret(endpoint=locked, secret=secret)


def set_endpoint_enabled(
    *,
    endpoint: WebhookEndpoint,
    enabled: bool,
    actor: Actor,
    now: dt.datetime | None = None,
    action: AuditAction | None = None,
) -> WebhookEndpoint:
    """Disabled: no new deliveries for it, pending ones wait (and fail at their deadline);
    enabled again: they resume. A repeat changes nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock_app(endpoint.app_id)
        locked = WebhookEndpoint.objects.select_related("app").get(pk=endpoint.pk)
        if locked.is_enabled == enabled:
            return locked
        locked.is_enabled = enabled
        locked.disabled_at = None if enabled else now
        locked.failing_since = None
        locked.save(update_fields=["is_enabled", "disabled_at", "failing_since"])
        _refresh_subscriptions(locked.app_id)
        default = AuditAction.WEBHOOK_ENABLED if enabled else AuditAction.WEBHOOK_DISABLED
        _endpoint_event(locked, action or default, actor, now)
    return locked


def secrets_in_use(endpoint: WebhookEndpoint, now: dt.datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one while it overlaps."""
    found = [crypto.decrypt(endpoint.secret_encrypted)]
    if (
        endpoint.previous_secret_encrypted
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    ):
        found.append(crypto.decrypt(endpoint.previous_secret_encrypted))
    return found


def reencrypt_secrets() -> int:
    """Every stored signing secret under the first WEBHOOK_ENCRYPTION_KEY (after a new key
    was put first); returns how many endpoints were rewritten."""
    done = 0
    for endpoint in WebhookEndpoint.objects.only(
        "pk", "secret_encrypted", "previous_secret_encrypted"
    ).iterator():
        with transaction.atomic():
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                secret_encrypted=crypto.reencrypt(endpoint.secret_encrypted),
                previous_secret_encrypted=(
                    crypto.reencrypt(endpoint.previous_secret_encrypted)
                    if endpoint.previous_secret_encrypted
                    else ""
                ),
            )
        done += 1
    return done


# Fan-out --------------------------------------------------------------------------------


def dispatch_events(*, now: dt.datetime | None = None, batch_size: int = 500) -> list[int]:
    """Turns events not dispatched yet into one delivery per enabled endpoint of their app that
    wants their type, in bounded batches; returns the ids of the new deliveries to send at
    once: those of endpoints that are not failing (the sweep probes a failing one, one
    delivery at a time). Two dispatchers at once take different events (SKIP LOCKED)."""
    now = now or timezone.now()
    created: list[int] = []
    while True:
        with transaction.atomic():
            events = list(
                Event.objects.filter(dispatched_at__isnull=True)
                .order_by("created_at")
                .select_for_update(skip_locked=True)[:batch_size]
            )
            if not events:
                break
            endpoints: dict[int, list[WebhookEndpoint]] = {}
            for endpoint in WebhookEndpoint.objects.filter(
                app_id__in={event.app_id for event in events}, is_enabled=True
            ):
                endpoints.setdefault(endpoint.app_id, []).append(endpoint)
            deliveries = [
                Delivery(event=event, endpoint=endpoint, created_at=now, next_attempt_at=now)
                for event in events
                for endpoint in endpoints.get(event.app_id, [])
                if endpoint.wants(event.type)
            ]
            Delivery.objects.bulk_create(deliveries)
            Event.objects.filter(pk__in=[event.pk for event in events]).update(dispatched_at=now)
            created += [
                delivery.pk for delivery in deliveries if delivery.endpoint.failing_since is None
            ]
        if len(events) < batch_size:
            break
    return created


def fail_expired_deliveries(*, now: dt.datetime | None = None, batch_size: int = 1000) -> int:
    """Pending deliveries older than WEBHOOK_RETRY_FOR are failed (visibly, in the log): those
    a disabled endpoint held back, or whose last retry came too late."""
    now = now or timezone.now()
    deadline = now - settings.WEBHOOK_RETRY_FOR
    total = 0
    while True:
        batch = Delivery.objects.filter(
            status=DeliveryStatus.PENDING, created_at__lte=deadline, next_attempt_at__lte=now
        ).values("pk")[:batch_size]
        done = Delivery.objects.filter(pk__in=Subquery(batch)).update(
            status=DeliveryStatus.FAILED, completed_at=now, next_attempt_at=None
        )
        total += done
        if done < batch_size:
            if total:
                metrics.WEBHOOK_DELIVERIES_FAILED.inc(total)
            return total


def due_deliveries(*, now: dt.datetime | None = None, limit: int = 5000) -> list[int]:
    """Deliveries whose attempt is due, at most PER_ENDPOINT_BATCH per enabled endpoint and
    one for an endpoint that is failing, so a receiver that is down holds up nobody else's.
    One bounded statement: the ranking and the caps are applied by the database."""
    now = now or timezone.now()
    ranked = (
        Delivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=now,
            endpoint__is_enabled=True,
        )
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("endpoint_id")], order_by=F("next_attempt_at").asc()
            ),
        )
        .filter(Q(rank=1) | Q(rank__lte=PER_ENDPOINT_BATCH, endpoint__failing_since__isnull=True))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)
    )
    return list(ranked[:limit])


# Attempts -------------------------------------------------------------------------------


def payload(event: Event) -> bytes:
    """The body POSTed, exactly as signed."""
    return json.dumps(
        {
            "id": event.event_id,
            "type": event.type,
            "created_at": event.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "app_id": event.app.app_id,
            "data": event.data,
        },
        separators=(",", ":"),
        sort_keys=False,
    ).encode()


def retry_delay(attempts: int) -> dt.timedelta:
    """After the `attempts`-th failed attempt: about 30 s, 2 min, 10 min, 1 h, 6 h, then
    every 12 h, each ±20 % so that a receiver coming back is not hit by every retry at once."""
    base = RETRY_DELAYS[attempts - 1] if attempts <= len(RETRY_DELAYS) else LATER_RETRY_DELAY
    return dt.timedelta(seconds=base * random.uniform(1 - JITTER, 1 + JITTER))  # noqa: S311


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: int
    outcome: http.Outcome | None
    """None: nothing was sent (not due, leased by another worker, done, endpoint disabled)."""


def attempt_delivery(
    *,
    delivery_id: int,
    now: dt.datetime | None = None,
    post: Callable[[str, bytes, dict[str, str]], http.Outcome] = http.post,
) -> AttemptResult:
    """Leases the delivery (its next_attempt_at moves WEBHOOK_DELIVERY_LEASE ahead, in one
    conditional UPDATE: of two workers only one sends), POSTs outside any transaction, then
    records the attempt and what follows it. A worker killed in between leaves the lease to
    run out, and the sweep sends again: at least once. To an endpoint that is failing, one
    attempt at a time: the tasks queued for it before it failed end at once instead of each
    holding a worker for the full timeout (the sweep sends them as probes later)."""
    now = now or timezone.now()
    due = Delivery.objects.filter(
        pk=delivery_id,
        status=DeliveryStatus.PENDING,
        next_attempt_at__lte=now,
        endpoint__is_enabled=True,
    )
    take = {"next_attempt_at": now + settings.WEBHOOK_DELIVERY_LEASE, "attempts": F("attempts") + 1}
    leased = due.filter(endpoint__failing_since__isnull=True).update(**take)
    probe = not leased and _take_probe(due, now)
    if probe:
        leased = due.update(**take)
    if not leased:
        return AttemptResult(delivery_id, None)
    delivery = Delivery.objects.select_related("event__app", "endpoint__app").get(pk=delivery_id)
    event, endpoint = delivery.event, delivery.endpoint
    body = payload(event)
    try:
        signing = secrets_in_use(endpoint, now)
    except crypto.KeyUnusable as exc:
        # The operator's key, not the receiver: logged, retried on the usual schedule (so a
        # fixed key resumes delivery), and the endpoint is not counted as failing.
        log.error("webhook delivery %s not sent: %s", delivery_id, exc.message)
        outcome = http.Outcome(None, 0, "", f"not sent: {exc.message}")
        _record_attempt(delivery, outcome, now, probe=probe, receiver_failed=False)
        return AttemptResult(delivery_id, outcome)
    timestamp = int(timezone.now().timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Portal-Webhooks/1.0",
        "Portal-Event-Id": event.event_id,
        "Portal-Event-Type": event.type,
        "Portal-Signature": crypto.signature(signing, timestamp, body),
    }
    outcome = post(endpoint.url, body, headers)
    _record_attempt(delivery, outcome, now, probe=probe)
    return AttemptResult(delivery_id, outcome)


def _take_probe(due: QuerySet[Delivery], now: dt.datetime) -> bool:
    """The failing endpoint's probe lease (one conditional UPDATE, so of two workers one
    wins), held until the attempt is recorded or WEBHOOK_DELIVERY_LEASE runs out."""
    endpoint_pk = due.values_list("endpoint_id", flat=True).first()
    if endpoint_pk is None:
        return False
    return bool(
        WebhookEndpoint.objects.filter(pk=endpoint_pk)
        .filter(Q(probing_until__isnull=True) | Q(probing_until__lte=now))
        .update(probing_until=now + settings.WEBHOOK_DELIVERY_LEASE)
    )


def _record_attempt(
    delivery: Delivery,
    outcome: http.Outcome,
    now: dt.datetime,
    *,
    probe: bool,
    receiver_failed: bool = True,
) -> None:
    metrics.record_webhook_attempt(
        result=_result(outcome, sent=receiver_failed),
        seconds=outcome.latency_ms / 1000 if receiver_failed else None,
    )
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            response_body=outcome.body,
            error=outcome.error,
            succeeded=outcome.succeeded,
        )
        endpoint = delivery.endpoint
        if probe:  # the next probe may go as soon as it is due
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(probing_until=None)
        if outcome.succeeded:
            Delivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.SUCCEEDED, completed_at=now, next_attempt_at=None
            )
            WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False).update(
                failing_since=None
            )
            return
        next_at = now + retry_delay(delivery.attempts)
        give_up = delivery.is_test or next_at > delivery.created_at + settings.WEBHOOK_RETRY_FOR
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED if give_up else DeliveryStatus.PENDING,
            completed_at=now if give_up else None,
            next_attempt_at=None if give_up else next_at,
        )
        if give_up and not delivery.is_test:
            metrics.WEBHOOK_DELIVERIES_FAILED.inc()
        if delivery.is_test or not receiver_failed:
            return
        failing = (
            WebhookEndpoint.objects.select_for_update(of=("self",))
            .select_related("app")
            .get(pk=endpoint.pk)
        )
        quiet = failing.last_failed_at is not None and (
            now - failing.last_failed_at > FAILURE_STREAK_GAP
        )
        if failing.failing_since is None or quiet:
            failing.failing_since = now
        failing.last_failed_at = now
        failing.save(update_fields=["failing_since", "last_failed_at"])
        if failing.is_enabled and now - failing.failing_since >= settings.WEBHOOK_RETRY_FOR:
            _auto_disable(failing, now)


def _result(outcome: http.Outcome, *, sent: bool) -> str:
    """The attempt's result as `portal_webhook_attempts_total` counts it."""
    if not sent:
        return "not_sent"
    if outcome.succeeded:
        return "succeeded"
    return "unreachable" if outcome.status_code is None else "rejected"


def _auto_disable(endpoint: WebhookEndpoint, now: dt.datetime) -> None:
    """Every attempt failed for WEBHOOK_RETRY_FOR: the endpoint is disabled, with an audit
    event and a mail to the app's contacts (sent once the disabling committed)."""
    since = endpoint.failing_since
    set_endpoint_enabled(
        endpoint=endpoint,
        enabled=False,
        actor=Actor.system("webhook_delivery"),
        now=now,
        action=AuditAction.WEBHOOK_AUTO_DISABLED,
    )
    metrics.WEBHOOK_ENDPOINTS_DISABLED.inc()
    log.warning("webhook endpoint %s disabled after failing since %s", endpoint.endpoint_id, since)
    app = endpoint.app
    if app.contact_emails:
        transaction.on_commit(lambda: _send_disabled_mail(endpoint, app, since))


def _send_disabled_mail(endpoint: WebhookEndpoint, app: App, since: dt.datetime) -> None:
    try:
        send_mail(
            subject=f"[portal] webhook endpoint {endpoint.endpoint_id} of {app.name} disabled",
            message=(
                f"Every delivery to the webhook endpoint {endpoint.endpoint_id} of the app "
                f"{app.name} ({app.app_id}) has failed since "
                f"{since.strftime('%Y-%m-%d %H:%M UTC')}, so it was disabled.\n\n"
                "Events are no longer sent to it. Fix the receiver, then ask your portal "
                "operator (or use the console) to enable it again; deliveries still pending "
                "resume then.\n"
            ),
            from_email=None,
            recipient_list=app.contact_emails,
        )
    except Exception:
        log.exception("mail about disabled webhook endpoint %s not sent", endpoint.endpoint_id)


def redeliver(*, delivery: Delivery, actor: Actor, now: dt.datetime | None = None) -> Delivery:
    """Staff send a delivery again, whatever its state: pending and due at once, with a new
    WEBHOOK_RETRY_FOR to succeed."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("endpoint", "event")
            .get(pk=delivery.pk)
        )
        locked.status, locked.completed_at = DeliveryStatus.PENDING, None
        locked.created_at = locked.next_attempt_at = now
        locked.save(update_fields=["status", "completed_at", "created_at", "next_attempt_at"])
        _endpoint_event(
            locked.endpoint,
            AuditAction.WEBHOOK_REDELIVERED,
            actor,
            now,
            event_id=locked.event.event_id,
        )
    return locked


def send_test_event(
    *, endpoint: WebhookEndpoint, actor: Actor, now: dt.datetime | None = None
) -> Delivery:
    """A `webhook.test` event to this endpoint only (whatever its types), tried once."""
    now = now or timezone.now()
    with transaction.atomic():
        event = Event.objects.create(
            app_id=endpoint.app_id,
            type=TEST_EVENT_TYPE,
            data={"endpoint_id": endpoint.endpoint_id},
            created_at=now,
            dispatched_at=now,
        )
        delivery = Delivery.objects.create(
            event=event, endpoint=endpoint, created_at=now, next_attempt_at=now, is_test=True
        )
        _endpoint_event(
            endpoint, AuditAction.WEBHOOK_TEST_SENT, actor, now, event_id=event.event_id
        )
    return delivery


# Retention ------------------------------------------------------------------------------


def sweep_log(
    *, now: dt.datetime | None = None, batch_size: int = 5000, retention: dt.timedelta | None = None
) -> dict[str, int]:
    """Deletes attempts, then finished deliveries with no attempt left, then dispatched events
    with no delivery left, older than WEBHOOK_LOG_RETENTION (30 days): each in bounded
    batches of one short DELETE driven by an index on its time, nothing loaded into Python."""
    now = now or timezone.now()
    cutoff = now - (settings.WEBHOOK_LOG_RETENTION if retention is None else retention)

    def in_batches(model: type, queryset: object) -> int:
        total = 0
        while True:
            batch = Subquery(queryset.values("pk")[:batch_size])  # type: ignore[attr-defined]
            done, _ = model.objects.filter(pk__in=batch).delete()
            total += done
            if done < batch_size:
                return total

    attempts = in_batches(
        DeliveryAttempt,
        DeliveryAttempt.objects.filter(attempted_at__lt=cutoff).order_by("attempted_at"),
    )
    deliveries = in_batches(
        Delivery,
        Delivery.objects.filter(created_at__lt=cutoff)
        .exclude(status=DeliveryStatus.PENDING)
        .exclude(Exists(DeliveryAttempt.objects.filter(delivery=OuterRef("pk"))))
        .order_by("created_at"),
    )
    events = in_batches(
        Event,
        Event.objects.filter(created_at__lt=cutoff, dispatched_at__isnull=False)
        .exclude(Exists(Delivery.objects.filter(event=OuterRef("pk"))))
        .order_by("created_at"),
    )
    return {"attempts": attempts, "deliveries": deliveries, "events": events}
