"""The operator's side of webhooks: an unusable encryption key fails visibly and recoverably,
no signing secret leaks into logs, audit, rows or errors, and the delivery bookkeeping holds
under races, disabled endpoints and partial subscriptions."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditEvent
from events import crypto, http, services
from events.models import Delivery, DeliveryAttempt, DeliveryStatus, Event, WebhookEndpoint
from portal.errors import DomainError
from tests.events.receiver import verify
from tests.helpers import new_user

OPERATOR = Actor.operator("tests")


def _endpoint(app, url: str, events: tuple[str, ...] = ("user.created",)) -> services.NewSecret:
    return services.create_endpoint(app=app, url=url, event_types=events, actor=OPERATOR)


@pytest.mark.django_db
def test_a_wrong_encryption_key_is_a_logged_attempt_retried_later_not_an_exception(
    customer, app, hook, settings, caplog
):
    """A key dropped too early: each delivery records why it was not sent and waits its
    usual retry, the receiver is not blamed (no failing_since, no auto-disable), and once
    the key is back the event goes out signed."""
    good = Fernet.generate_key().decode()
    settings.WEBHOOK_ENCRYPTION_KEY = [good]
    created = _endpoint(app, hook.url)
    new_user(customer, app.app_id)
    services.dispatch_events()
    delivery = Delivery.objects.get()
    settings.WEBHOOK_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    now = timezone.now()

    with caplog.at_level(logging.ERROR, logger="portal.events"):
        result = services.attempt_delivery(delivery_id=delivery.pk, now=now)

    assert result.outcome is not None and not result.outcome.succeeded
    assert hook.requests == []
    attempt = DeliveryAttempt.objects.get()
    assert attempt.error.startswith("not sent: a webhook signing secret cannot be decrypted")
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert dt.timedelta(seconds=23) <= delivery.next_attempt_at - now <= dt.timedelta(seconds=37)
    assert WebhookEndpoint.objects.get().failing_since is None
    assert "cannot be decrypted" in caplog.text

    settings.WEBHOOK_ENCRYPTION_KEY = [good]
    services.attempt_delivery(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    assert len(hook.requests) == 1
    assert verify(created.secret, hook.requests[0].headers, hook.requests[0].body)
    assert Delivery.objects.get().status == DeliveryStatus.SUCCEEDED


@pytest.mark.django_db
def test_a_malformed_encryption_key_is_a_clear_error_not_a_crash(app, settings):
    settings.WEBHOOK_ENCRYPTION_KEY = ["not-a-fernet-key"]
    with pytest.raises(DomainError, match="not a Fernet key"):
        _endpoint(app, "http://127.0.0.1:9/x")
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_no_signing_secret_reaches_a_log_an_audit_event_or_a_delivery_row(
    customer, app, hook, caplog
):
    hook.answers = [500]
    with caplog.at_level(logging.DEBUG):
        created = _endpoint(app, hook.url)
        rotated = services.rotate_secret(endpoint=created.endpoint, actor=OPERATOR)
        new_user(customer, app.app_id)
        services.dispatch_events()
        delivery = Delivery.objects.get()
        services.attempt_delivery(delivery_id=delivery.pk)
        services.redeliver(delivery=delivery, actor=OPERATOR)
        services.attempt_delivery(delivery_id=delivery.pk)
        services.send_test_event(endpoint=created.endpoint, actor=OPERATOR)
        services.set_endpoint_enabled(endpoint=created.endpoint, enabled=False, actor=OPERATOR)

    assert (
        len(hook.requests) == 2 and hook.requests[-1].headers["Portal-Signature"].count("v1=") == 2
    )
    stored = json.dumps(
        [list(model.objects.values()) for model in (AuditEvent, Event, Delivery, DeliveryAttempt)],
        default=str,
    )
    logged = caplog.text + " ".join(str(record.args) for record in caplog.records)
    for secret in (created.secret, rotated.secret):
        for where in (stored, logged):
            assert secret not in where and secret[6:] not in where
    assert "whsec_" not in stored + logged
    WebhookEndpoint.objects.update(secret_encrypted=crypto.encrypt("x")[:-4] + "AAAA")
    with pytest.raises(DomainError) as wrong:
        services.secrets_in_use(WebhookEndpoint.objects.get(), timezone.now())
    assert "whsec_" not in str(wrong.value) and "whsec_" not in repr(wrong.value.__cause__)


@pytest.mark.django_db
def test_a_failing_endpoint_gets_one_attempt_at_a_time_however_many_were_queued(
    customer, app, hook
):
    """Tasks pushed before the endpoint started failing: while one (the probe) waits on the
    receiver, the others end at once without sending and stay due; a healthy endpoint's
    deliveries are not held back, and once the probe is recorded the next may go."""
    down = _endpoint(app, "http://127.0.0.1:9/down").endpoint
    _endpoint(app, hook.url)
    for name in ("a", "b", "c"):
        new_user(customer, app.app_id, name)
    services.dispatch_events()
    WebhookEndpoint.objects.filter(pk=down.pk).update(failing_since=timezone.now())
    first, second, third = Delivery.objects.filter(endpoint=down).order_by("pk")
    healthy = Delivery.objects.exclude(endpoint=down).values_list("pk", flat=True)
    sent: list[int] = []
    meanwhile: list[services.AttemptResult] = []

    def hanging_receiver(url, body, headers):
        sent.append(json.loads(body)["id"])
        meanwhile.append(services.attempt_delivery(delivery_id=second.pk, post=hanging_receiver))
        for pk in healthy:
            meanwhile.append(services.attempt_delivery(delivery_id=pk))
        return http.Outcome(None, 10000, "", "timeout: no full answer within 10 s")

    services.attempt_delivery(delivery_id=first.pk, post=hanging_receiver)

    assert sent == [first.event.event_id]
    assert meanwhile[0].outcome is None
    assert [result.outcome.status_code for result in meanwhile[1:]] == [200, 200, 200]
    second.refresh_from_db()
    assert second.attempts == 0 and second.next_attempt_at <= timezone.now()
    result = services.attempt_delivery(delivery_id=third.pk, post=hanging_receiver)
    assert result.outcome is not None and len(sent) == 2


@pytest.mark.django_db
def test_an_old_failure_streak_and_one_new_failure_do_not_disable(customer, app):
    """One event failing for its whole 3 days leaves the endpoint enabled (not 3 days of
    failures yet); a single failure ten quiet days later starts a new streak, it does not
    count those ten days as failing."""
    created = _endpoint(app, "http://127.0.0.1:9/x")

    def unreachable(url, body, headers):
        return http.Outcome(None, 1, "", "error: NewConnectionError")

    new_user(customer, app.app_id, "a")
    services.dispatch_events()
    delivery = Delivery.objects.get()
    while delivery.status == DeliveryStatus.PENDING:
        services.attempt_delivery(
            delivery_id=delivery.pk, now=delivery.next_attempt_at, post=unreachable
        )
        delivery.refresh_from_db()
    assert WebhookEndpoint.objects.get().is_enabled

    later = delivery.created_at + dt.timedelta(days=13)
    new_user(customer, app.app_id, "b")
    services.dispatch_events(now=later)
    fresh = Delivery.objects.exclude(pk=delivery.pk).get()
    services.attempt_delivery(delivery_id=fresh.pk, now=later, post=unreachable)

    endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    assert endpoint.is_enabled and endpoint.failing_since == later


@pytest.mark.django_db
def test_reencrypting_without_the_old_key_is_a_clear_command_error(app, settings):
    _endpoint(app, "http://127.0.0.1:9/x")
    settings.WEBHOOK_ENCRYPTION_KEY = [Fernet.generate_key().decode()]  # the old one dropped
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("reencrypt_webhook_secrets", "--json", stdout=out)
    assert exit_info.value.code == 1
    assert "cannot be decrypted" in json.loads(out.getvalue())["error"]


@pytest.mark.django_db
def test_an_attempt_costs_a_bounded_number_of_queries(
    customer, app, hook, django_assert_max_num_queries
):
    """The probe lease costs a healthy endpoint nothing, a failing one four statements (the
    lease tried first, the endpoint, its probe lease taken, then released)."""
    down = _endpoint(app, "http://127.0.0.1:9/down").endpoint
    _endpoint(app, hook.url)
    new_user(customer, app.app_id)
    services.dispatch_events()
    healthy = Delivery.objects.exclude(endpoint=down).get()
    with django_assert_max_num_queries(7):
        assert services.attempt_delivery(delivery_id=healthy.pk).outcome.succeeded
    WebhookEndpoint.objects.filter(pk=down.pk).update(failing_since=timezone.now())

    def unreachable(url, body, headers):
        return http.Outcome(None, 1, "", "error: NewConnectionError")

    probe = Delivery.objects.get(endpoint=down)
    with django_assert_max_num_queries(12):
        services.attempt_delivery(delivery_id=probe.pk, post=unreachable)


@pytest.mark.django_db
def test_the_signature_header_has_exactly_the_contract_shape(customer, app, hook):
    created = _endpoint(app, hook.url)
    new_user(customer, app.app_id, "a")
    services.dispatch_events()
    services.attempt_delivery(delivery_id=Delivery.objects.get().pk)
    rotated = services.rotate_secret(endpoint=created.endpoint, actor=OPERATOR)
    new_user(customer, app.app_id, "b")
    services.dispatch_events()
    services.attempt_delivery(delivery_id=Delivery.objects.latest("pk").pk)

    single, double = (request.headers for request in hook.requests)
    assert re.fullmatch(r"t=(\d+),v1=[0-9a-f]{64}", single["Portal-Signature"])
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}", double["Portal-Signature"])
    timestamp = int(single["Portal-Signature"].split(",")[0][2:])
    assert abs(timestamp - timezone.now().timestamp()) < 60
    assert single["User-Agent"].startswith("Portal-Webhooks/")
    assert single["Content-Type"] == "application/json"
    for request, secret in zip(hook.requests, (created.secret, rotated.secret), strict=True):
        assert verify(secret, request.headers, request.body)
        assert request.headers["Portal-Event-Id"] == request.event["id"]
        assert request.headers["Portal-Event-Type"] == request.event["type"] == "user.created"
