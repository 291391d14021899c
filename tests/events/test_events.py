"""Lifecycle events from the real API and services to a real HTTP receiver: signature, headers
and payload of every event type; the outbox's transactions; retries and their log."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.audit import Actor
from accounts.lifecycle import EventType
from accounts.models import App, AuditAction, AuditEvent, LinkedUser
from devices import services as device_services
from devices.models import Device, InactiveReason
from events import crypto, services, tasks
from events.models import Delivery, DeliveryAttempt, DeliveryStatus, Event, WebhookEndpoint
from tests.events.receiver import verify
from tests.factories import ApiKeyFactory
from tests.helpers import issue_code, new_user, redeem

OPERATOR = Actor.operator("tests")
DATA_KEYS = {
    "user_id",
    "external_id",
    "install_id",
    "platform",
    "form_factor",
    "reason",
    "key_id",
    "new_key_id",
    "expires_at",
    "request_id",
}


def _endpoint(app: App, url: str, events: tuple[str, ...] = ()) -> services.NewSecret:
    return services.create_endpoint(app=app, url=url, event_types=events, actor=OPERATOR)


def _deliver_all() -> None:
    """What the beat sweep does, in-process (tasks run eagerly in the tests)."""
    tasks.sweep_webhooks()


def _code(customer: APIClient, external_id: str = "alice") -> str:
    return issue_code(customer, external_id)["authentication_code"]


@pytest.mark.django_db
def test_every_event_type_reaches_the_receiver_signed(customer, app, hook):
    secret = _endpoint(app, hook.url).secret
    sdk = APIClient()
    phone = redeem(sdk, _code(customer), app.app_id, "phone-one-1").json()
    phone_two = redeem(sdk, _code(customer), app.app_id, "phone-two-2").json()
    tablet_answer = redeem(sdk, _code(customer), app.app_id, "tablet-1-1", form_factor="tablet")
    assert tablet_answer.status_code == 201
    sdk.credentials(HTTP_AUTHORIZATION=f"Bearer {phone_two['access_token']}")
    assert sdk.post("/sdk/reset").status_code == 204
    user = LinkedUser.objects.get(user_id=phone["user_id"])
    tablet = Device.objects.select_related("user").get(install_id="tablet-1-1")
    device_services.activate_device(device=tablet, actor=OPERATOR)
    device_services.deactivate_device(device=tablet, actor=OPERATOR)
    account_services.set_user_disabled(user=user, disabled=True, actor=OPERATOR)
    account_services.set_user_disabled(user=user, disabled=False, actor=OPERATOR)
    device_services.activate_device(device=tablet, actor=OPERATOR)
    request_id = customer.delete(f"/users/{user.user_id}").json()["request_id"]
    account_services.purge_deleted_user(request_id=request_id)
    expiring = ApiKeyFactory(app=app, expires_at=timezone.now() + dt.timedelta(days=10))
    account_services.send_key_expiry_notices()
    rotated = account_services.rotate_api_key(
        api_key=expiring, grace=dt.timedelta(hours=1), actor=OPERATOR
    )
    account_services.revoke_api_key(api_key=rotated.new.api_key, actor=OPERATOR)

    _deliver_all()

    events = [request.event for request in hook.requests]
    assert {event["type"] for event in events} == set(EventType.values)
    assert len(hook.requests) == Event.objects.count() == len({e["id"] for e in events})
    reasons = {e["data"].get("reason") for e in events if e["type"] == "device.deactivated"}
    assert reasons == {
        InactiveReason.REPLACED_BY_NEWER_DEVICE,
        InactiveReason.PHONE_PREFERRED,
        InactiveReason.RESET,
        InactiveReason.DEACTIVATED_BY_SUPPORT,
        InactiveReason.USER_DELETED,
    }
    secrets = {phone["access_token"], phone_two["access_token"], customer.api_key.full_key}
    for request in hook.requests:
        event = request.event
        assert verify(secret, request.headers, request.body)
        assert request.headers["Portal-Event-Id"] == event["id"]
        assert request.headers["Portal-Event-Type"] == event["type"]
        assert request.headers["Content-Type"] == "application/json"
        assert "Cookie" not in request.headers and "Authorization" not in request.headers
        assert request.path == "/hooks"
        assert set(event) == {"id", "type", "created_at", "app_id", "data"}
        assert re.fullmatch(r"[0-9a-f]{24}", event["id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["created_at"])
        assert event["app_id"] == app.app_id
        assert set(event["data"]) <= DATA_KEYS
        assert not secrets & set(map(str, event["data"].values()))
    by_type = {event["type"]: event["data"] for event in events}
    assert by_type["user.created"] == {"user_id": user.user_id, "external_id": "alice"}
    # Announced once, by the first redemption, with that redemption's device.activated; the
    # next redemptions bring the user back.
    written = list(Event.objects.order_by("pk").values_list("type", flat=True))
    assert written[:3] == ["user.created", "device.activated", "user.restored"]
    assert written.count("user.created") == 1
    assert by_type["user.deleted"]["request_id"] == request_id
    assert by_type["user.purged"] == {"user_id": user.user_id, "request_id": request_id}
    assert by_type["api_key.expiring"]["key_id"] == expiring.key_id
    assert by_type["api_key.rotated"]["new_key_id"] == rotated.new.api_key.key_id
    assert by_type["device.activated"]["platform"] == "android"
    assert DeliveryAttempt.objects.filter(succeeded=True).count() == len(events)
    assert not Delivery.objects.exclude(status=DeliveryStatus.SUCCEEDED).exists()


@pytest.mark.django_db
def test_an_endpoint_gets_only_the_types_it_wants(customer, app, hook):
    _endpoint(app, hook.url, events=("device.activated",))
    redeem(APIClient(), _code(customer), app.app_id, "phone-one-1")
    _deliver_all()
    assert [request.event["type"] for request in hook.requests] == ["device.activated"]
    assert Event.objects.get().type == "device.activated"  # user.created was never written


@pytest.mark.django_db
def test_an_app_without_endpoint_writes_no_event(customer, app):
    other = App.objects.create(name="other")
    services.create_endpoint(app=other, url="http://127.0.0.1:9/x", actor=OPERATOR)
    code = _code(customer)
    redeem(APIClient(), code, app.app_id, "phone-one-1")
    account_services.set_user_disabled(user=LinkedUser.objects.get(), disabled=True, actor=OPERATOR)
    assert not Event.objects.exists()
    assert App.objects.get(pk=app.pk).webhook_events == ""


def _request_queries(customer: APIClient, app: App, name: str) -> tuple[int, int]:
    """Queries of one issuance (for a new user) and of its code's redemption."""
    with CaptureQueriesContext(connection) as issued:
        code = _code(customer, name)
    assert not Event.objects.exists()  # issuance announces nothing, endpoint or not
    with CaptureQueriesContext(connection) as redeemed:
        assert redeem(APIClient(), code, app.app_id, f"install-{name}").status_code == 201
    return len(issued), len(redeemed)


@pytest.mark.django_db
def test_the_outbox_costs_redemption_no_query_on_postgresql(customer, app):
    """Issuance writes no outbox row (2 queries on PostgreSQL, endpoint or not). Redemption's
    rows (user.created, device.activated) ride in its device upsert on PostgreSQL (5 queries,
    with or without an endpoint); SQLite pays one INSERT more for them."""
    _code(customer, "warm-up")  # the key's last_used_at, once a minute
    without = _request_queries(customer, app, "alice")
    _endpoint(app, "http://127.0.0.1:9/x")
    with_endpoint = _request_queries(customer, app, "bob")
    extra = 0 if connection.vendor == "postgresql" else 1
    assert with_endpoint == (without[0], without[1] + extra)
    if connection.vendor == "postgresql":
        assert without == (2, 5)
    assert sorted(Event.objects.values_list("type", flat=True)) == [
        "device.activated",
        "user.created",
    ]


@pytest.mark.django_db
def test_user_created_is_announced_by_the_first_redemption_only(customer, app):
    """As the audit log tells it: codes alone make no user; its first device does, a retry of
    that redemption announces nothing again, and a second device brings the user back."""
    _endpoint(app, "http://127.0.0.1:9/x", events=("user.created", "user.restored"))
    first = issue_code(customer, "alice")
    second = issue_code(customer, "alice")
    assert second["existing_user"] and second["user_id"] == first["user_id"]
    assert not Event.objects.exists()

    sdk = APIClient()
    for _ in range(2):  # the SDK's retry after a network error
        answer = redeem(sdk, first["authentication_code"], app.app_id, "phone-one-1")
        assert answer.json()["restored"] is False
    created = Event.objects.get()
    assert created.type == "user.created"
    assert created.data == {"user_id": first["user_id"], "external_id": "alice"}
    audit = AuditEvent.objects.get(action=AuditAction.USER_CREATED)
    assert (audit.user_ref, audit.occurred_at) == (first["user_id"], created.created_at)

    assert redeem(sdk, second["authentication_code"], app.app_id, "phone-two-2").json()["restored"]
    assert list(Event.objects.order_by("pk").values_list("type", flat=True)) == [
        "user.created",
        "user.restored",
    ]


@pytest.mark.django_db
def test_a_rolled_back_change_leaves_no_event(customer, app):
    _endpoint(app, "http://127.0.0.1:9/x")
    code = _code(customer)
    user = LinkedUser.objects.get()
    with pytest.raises(RuntimeError), transaction.atomic():
        account_services.set_user_disabled(user=user, disabled=True, actor=OPERATOR)
        assert Event.objects.filter(type="user.disabled").exists()  # written, in the transaction
        raise RuntimeError("the caller's transaction fails later")
    # A redemption refused after the device was written (another app's code) rolls back too.
    other_app_id = App.objects.create(name="other").app_id
    assert redeem(APIClient(), code, other_app_id, "phone-one-1").status_code == 400
    assert not Event.objects.exists()
    assert not LinkedUser.objects.get().is_disabled


@pytest.mark.django_db
def test_a_receiver_answering_500_then_200_gets_a_retry_logged_twice(customer, app, hook):
    _endpoint(app, hook.url, events=("user.created",))
    hook.answers = [500]
    rejected = _attempts("rejected")
    new_user(customer, app.app_id)
    _deliver_all()
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert _attempts("rejected") == rejected + 1
    wait = delivery.next_attempt_at - timezone.now()
    assert dt.timedelta(seconds=20) < wait < dt.timedelta(seconds=37)  # about 30 s, jittered
    _deliver_all()
    assert len(hook.requests) == 1  # not due yet

    later = delivery.next_attempt_at + dt.timedelta(seconds=1)
    succeeded = _attempts("succeeded")
    services.attempt_delivery(delivery_id=delivery.pk, now=later)

    assert len(hook.requests) == 2 and len(set(hook.event_ids())) == 1
    assert _attempts("succeeded") == succeeded + 1
    assert _attempts("rejected") == rejected + 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 2
    log = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("attempted_at"))
    assert [(a.status_code, a.succeeded) for a in log] == [(500, False), (200, True)]
    assert log[0].response_body == "answered 500" and log[0].latency_ms >= 0
    assert WebhookEndpoint.objects.get().failing_since is None


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _attempts(result: str) -> float:
    """`portal_webhook_attempts_total` for one result, in this process."""
    return _metric("portal_webhook_attempts_total", result=result)


def test_the_retry_schedule_backs_off_with_jitter():
    expected = [30, 120, 600, 3600, 6 * 3600, 12 * 3600, 12 * 3600]
    for attempts, seconds in enumerate(expected, start=1):
        delays = {services.retry_delay(attempts).total_seconds() for _ in range(20)}
        assert all(0.8 * seconds <= delay <= 1.2 * seconds for delay in delays)
        assert len(delays) > 1  # jittered


@pytest.mark.django_db
def test_three_days_of_failures_fail_the_delivery_and_disable_the_endpoint(customer, app):
    created = _endpoint(app, "http://127.0.0.1:9/unreachable", events=("user.created",))
    new_user(customer, app.app_id)
    services.dispatch_events()
    delivery = Delivery.objects.get()
    start = delivery.created_at
    moment = start
    unreachable, given_up, disabled = (
        _attempts("unreachable"),
        _metric("portal_webhook_deliveries_failed_total"),
        _metric("portal_webhook_endpoints_auto_disabled_total"),
    )
    while Delivery.objects.get().status == DeliveryStatus.PENDING:
        moment = Delivery.objects.get().next_attempt_at
        services.attempt_delivery(delivery_id=delivery.pk, now=moment)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert 7 <= delivery.attempts <= 12
    assert DeliveryAttempt.objects.filter(delivery=delivery, succeeded=False).count() == (
        delivery.attempts
    )
    assert all(a.error.startswith("error:") for a in DeliveryAttempt.objects.all())
    assert _attempts("unreachable") == unreachable + delivery.attempts
    assert _metric("portal_webhook_deliveries_failed_total") == given_up + 1
    # The endpoint has failed since the first attempt; the next failure past 3 days disables it.
    new_user(customer, app.app_id, "bob")
    services.dispatch_events(now=start + dt.timedelta(days=3, hours=1))
    late = Delivery.objects.exclude(pk=delivery.pk).get()
    services.attempt_delivery(delivery_id=late.pk, now=start + dt.timedelta(days=3, hours=1))

    endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    assert not endpoint.is_enabled and endpoint.disabled_at is not None
    assert App.objects.get(pk=app.pk).webhook_events == ""
    audit = AuditEvent.objects.get(action=AuditAction.WEBHOOK_AUTO_DISABLED)
    assert audit.target_id == endpoint.endpoint_id and audit.app_id == app.pk
    assert _metric("portal_webhook_endpoints_auto_disabled_total") == disabled + 1


@pytest.mark.django_db
def test_deliveries_a_disabled_endpoint_held_fail_after_three_days(customer, app):
    created = _endpoint(app, "http://127.0.0.1:9/unreachable", events=("user.created",))
    new_user(customer, app.app_id)
    services.dispatch_events()
    services.set_endpoint_enabled(
        endpoint=created.endpoint, enabled=False, actor=Actor.operator("test")
    )
    given_up = _metric("portal_webhook_deliveries_failed_total")
    start = Delivery.objects.get().created_at

    assert services.fail_expired_deliveries(now=start + dt.timedelta(days=2)) == 0
    assert services.fail_expired_deliveries(now=start + dt.timedelta(days=3, minutes=1)) == 1

    assert Delivery.objects.get().status == DeliveryStatus.FAILED
    assert not DeliveryAttempt.objects.exists()  # never sent: the endpoint was disabled
    assert _metric("portal_webhook_deliveries_failed_total") == given_up + 1


@pytest.mark.django_db(transaction=True)
def test_the_auto_disable_mails_the_app_contacts(customer, app):
    created = _endpoint(app, "http://127.0.0.1:9/unreachable", events=("user.created",))
    WebhookEndpoint.objects.update(failing_since=timezone.now() - dt.timedelta(days=3, minutes=1))
    new_user(customer, app.app_id)
    services.dispatch_events()
    services.attempt_delivery(delivery_id=Delivery.objects.get().pk)
    assert not WebhookEndpoint.objects.get().is_enabled
    (message,) = mail.outbox
    assert message.to == app.contact_emails
    assert created.endpoint.endpoint_id in message.subject
    assert created.secret not in message.body


@pytest.mark.django_db
def test_a_rotated_secret_signs_beside_the_new_one_for_24_hours(customer, app, hook):
    created = _endpoint(app, hook.url, events=("user.created",))
    rotated = services.rotate_secret(endpoint=created.endpoint, actor=OPERATOR)
    new_user(customer, app.app_id, "alice")
    _deliver_all()
    (request,) = hook.requests
    assert request.headers["Portal-Signature"].count("v1=") == 2
    assert verify(created.secret, request.headers, request.body)
    assert verify(rotated.secret, request.headers, request.body)

    WebhookEndpoint.objects.update(previous_secret_expires_at=timezone.now())
    new_user(customer, app.app_id, "bob")
    _deliver_all()
    latest = hook.requests[-1]
    assert latest.headers["Portal-Signature"].count("v1=") == 1
    assert verify(rotated.secret, latest.headers, latest.body)
    assert not verify(created.secret, latest.headers, latest.body)


@pytest.mark.django_db
def test_the_signing_secret_is_stored_encrypted(app):
    created = _endpoint(app, "http://127.0.0.1:9/x")
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", created.secret)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM events_webhookendpoint")
        stored = json.dumps(cursor.fetchall(), default=str)
    assert created.secret not in stored and created.secret[6:] not in stored
    assert crypto.decrypt(WebhookEndpoint.objects.get().secret_encrypted) == created.secret


@pytest.mark.django_db
def test_a_new_encryption_key_reencrypts_every_secret(app, settings):
    created = _endpoint(app, "http://127.0.0.1:9/x")
    old = WebhookEndpoint.objects.get().secret_encrypted
    from cryptography.fernet import Fernet

    settings.WEBHOOK_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    with pytest.raises(Exception, match="cannot be decrypted"):
        crypto.decrypt(old)  # the derived key is gone: it must be kept beside the new one
    derived = crypto._derived_key(settings.SECRET_KEY).decode()
    settings.WEBHOOK_ENCRYPTION_KEY = [settings.WEBHOOK_ENCRYPTION_KEY[0], derived]
    assert services.reencrypt_secrets() == 1
    settings.WEBHOOK_ENCRYPTION_KEY = settings.WEBHOOK_ENCRYPTION_KEY[:1]
    assert crypto.decrypt(WebhookEndpoint.objects.get().secret_encrypted) == created.secret


@pytest.mark.django_db
def test_a_failing_endpoint_gets_one_probe_per_sweep_and_holds_up_no_other(customer, app):
    down = _endpoint(app, "http://127.0.0.1:9/down", events=("user.created",)).endpoint
    up = _endpoint(app, "http://127.0.0.1:9/up", events=("user.created",)).endpoint
    for name in ("a", "b", "c"):
        new_user(customer, app.app_id, name)
    services.dispatch_events()
    WebhookEndpoint.objects.filter(pk=down.pk).update(failing_since=timezone.now())
    due = Delivery.objects.filter(pk__in=services.due_deliveries())
    assert due.filter(endpoint=down).count() == 1
    assert due.filter(endpoint=up).count() == 3


@pytest.mark.django_db
def test_at_most_five_endpoints_per_app(app):
    for number in range(5):
        _endpoint(app, f"http://127.0.0.1:9/{number}")
    with pytest.raises(Exception, match="already has 5"):
        _endpoint(app, "http://127.0.0.1:9/6")


@pytest.mark.django_db
def test_the_subscription_column_follows_the_endpoints(app):
    first = _endpoint(app, "http://127.0.0.1:9/a", events=("user.deleted", "user.created"))
    assert App.objects.get(pk=app.pk).webhook_events == "user.created user.deleted"
    second = _endpoint(app, "http://127.0.0.1:9/b", events=("api_key.revoked",))
    assert App.objects.get(pk=app.pk).webhook_events == "user.created user.deleted api_key.revoked"
    services.set_endpoint_enabled(endpoint=first.endpoint, enabled=False, actor=OPERATOR)
    assert App.objects.get(pk=app.pk).webhook_events == "api_key.revoked"
    services.update_endpoint(endpoint=second.endpoint, event_types=[], actor=OPERATOR)
    assert App.objects.get(pk=app.pk).webhook_events == " ".join(EventType.values)
    with pytest.raises(Exception, match="unknown event type"):
        _endpoint(app, "http://127.0.0.1:9/c", events=("user.exploded",))


@pytest.mark.django_db
def test_redeliver_and_test_event(customer, app, hook):
    created = _endpoint(app, hook.url, events=("user.created",))
    new_user(customer, app.app_id)
    _deliver_all()
    delivery = Delivery.objects.get()
    services.redeliver(delivery=delivery, actor=Actor.staff("support"))
    _deliver_all()
    assert hook.event_ids() == [delivery.event.event_id] * 2

    hook.answers = [503]
    test = services.send_test_event(endpoint=created.endpoint, actor=Actor.staff("support"))
    _deliver_all()
    test.refresh_from_db()
    assert hook.requests[-1].event["type"] == "webhook.test"
    assert test.status == DeliveryStatus.FAILED and test.attempts == 1  # tried once
    assert WebhookEndpoint.objects.get().failing_since is None  # a test does not count
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {AuditAction.WEBHOOK_REDELIVERED, AuditAction.WEBHOOK_TEST_SENT} <= actions


@pytest.mark.django_db
def test_the_log_is_swept_after_30_days_in_batches(customer, app, hook):
    _endpoint(app, hook.url, events=("user.created",))
    for name in ("a", "b", "c"):
        new_user(customer, app.app_id, name)
    _deliver_all()
    assert Event.objects.count() == 3
    old = timezone.now() - dt.timedelta(days=31)
    Event.objects.update(created_at=old)
    Delivery.objects.update(created_at=old)
    DeliveryAttempt.objects.filter(
        pk__in=DeliveryAttempt.objects.order_by("pk").values("pk")[:2]
    ).update(attempted_at=old)

    assert services.sweep_log(batch_size=1) == {"attempts": 2, "deliveries": 2, "events": 2}
    assert Event.objects.count() == DeliveryAttempt.objects.count() == 1
    assert services.sweep_log() == {"attempts": 0, "deliveries": 0, "events": 0}


@pytest.mark.django_db(transaction=True)
def test_a_commit_wakes_the_dispatcher(customer, app, hook):
    """No sweep here: the commit's wake-up alone delivers (tasks run in-process)."""
    _endpoint(app, hook.url, events=("user.disabled",))
    user = LinkedUser.objects.create(app=app, external_id="carol")
    account_services.set_user_disabled(user=user, disabled=True, actor=OPERATOR)
    assert [request.event["type"] for request in hook.requests] == ["user.disabled"]
