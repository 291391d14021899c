"""The Webhooks page: the signing secret shown once and never again, what each role may do,
another app's endpoint not found, the services' refusals as form errors, the delivery log
escaped, and a fixed number of queries whatever the log holds."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import ActorType, AuditAction, AuditEvent
from console.models import Membership, Role
from events import crypto, services
from events.models import Delivery, DeliveryAttempt, DeliveryStatus, Event, WebhookEndpoint
from tests.events.receiver import receiver, verify
from tests.factories import AppFactory

pytestmark = pytest.mark.django_db

PAGE_QUERIES = 12
"""Session, person, authenticator, membership, then the page's own reads."""
URL = "https://127.0.0.1:9/hooks"


@pytest.fixture(autouse=True)
def _local_urls_allowed(settings) -> None:
    """Endpoints here point at 127.0.0.1 (nothing is sent unless a test asks); the SSRF test
    turns the guard back on."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


def url(name: str, membership: Membership, *args: object) -> str:
    return reverse(f"console:{name}", args=[membership.app.app_id, *args])


def page(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def endpoint_of(membership: Membership, **kwargs: object) -> WebhookEndpoint:
    return services.create_endpoint(
        app=membership.app, url=kwargs.pop("url", URL), actor=Actor.operator("t"), **kwargs
    ).endpoint


def console_events(action: AuditAction) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, actor_type=ActorType.CONSOLE))


def create(client: Client, membership: Membership, **data: object) -> object:
    nonce = client.get(url("webhook_create", membership)).context["form_nonce"]
    return client.post(url("webhook_create", membership), {"form_nonce": nonce, **data})


def stored_in_clear(secret: str) -> bool:
    rows = [
        *WebhookEndpoint.objects.values(),
        *AuditEvent.objects.values(),
        *Event.objects.values(),
    ]
    return any(secret in str(row) for row in rows)


def test_create_shows_the_secret_once_and_never_again(member) -> None:
    client, membership = member(Role.DEVELOPER)
    nonce = client.get(url("webhook_create", membership)).context["form_nonce"]
    data = {"url": URL, "all_events": "on", "form_nonce": nonce}
    response = client.post(url("webhook_create", membership), data)
    assert response.status_code == 200
    secret = response.context["secret"]
    assert secret.startswith("whsec_") and secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get(app=membership.app)
    assert (endpoint.url, endpoint.event_types, endpoint.is_enabled) == (URL, [], True)
    assert crypto.decrypt(endpoint.secret_encrypted) == secret
    assert not stored_in_clear(secret)
    assert [e.actor for e in console_events(AuditAction.WEBHOOK_CREATED)] == [membership.user.email]
    # the same form again creates nothing and shows nothing
    again = client.post(url("webhook_create", membership), data)
    assert again.status_code == 302 and WebhookEndpoint.objects.count() == 1
    for name, args in [
        ("webhooks", []),
        ("webhook_detail", [endpoint.endpoint_id]),
        ("webhook_edit", [endpoint.endpoint_id]),
        ("webhook_rotate", [endpoint.endpoint_id]),
        ("webhook_create", []),
    ]:
        html = page(client, url(name, membership, *args))
        assert secret not in html and "whsec_" not in html, name


def test_rotate_shows_the_new_secret_once_and_the_old_one_signs_for_24_hours(member) -> None:
    client, membership = member(Role.OWNER)
    created = services.create_endpoint(app=membership.app, url=URL, actor=Actor.operator("t"))
    endpoint = created.endpoint
    path = url("webhook_rotate", membership, endpoint.endpoint_id)
    nonce = client.get(path).context["form_nonce"]
    response = client.post(path, {"form_nonce": nonce})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    new = response.context["secret"]
    html = response.content.decode()
    assert new.startswith("whsec_") and new != created.secret and new in html
    assert "keeps signing beside this one for 24 hours" in html
    endpoint.refresh_from_db()
    now = timezone.now()
    assert services.secrets_in_use(endpoint, now) == [new, created.secret]
    assert services.secrets_in_use(endpoint, now + dt.timedelta(hours=24, seconds=1)) == [new]
    assert not stored_in_clear(new)
    assert len(console_events(AuditAction.WEBHOOK_SECRET_ROTATED)) == 1
    # resent: no second rotation, nothing shown
    again = client.post(path, {"form_nonce": nonce})
    assert again.status_code == 302
    endpoint.refresh_from_db()
    assert crypto.decrypt(endpoint.secret_encrypted) == new
    detail = page(client, url("webhook_detail", membership, endpoint.endpoint_id))
    assert "still signs beside the current one" in detail
    assert new not in detail and created.secret not in detail


def test_event_types_then_url_and_events_changed(member) -> None:
    client, membership = member(Role.DEVELOPER)
    response = create(client, membership, url=URL, events=["user.deleted", "user.created"])
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get(app=membership.app)
    assert endpoint.event_types == ["user.created", "user.deleted"]  # the contract's order
    edit = url("webhook_edit", membership, endpoint.endpoint_id)
    assert page(client, edit).count("checked") >= 2
    # neither "all" nor a type: refused on the form, nothing changed
    refused = client.post(edit, {"url": URL})
    assert refused.status_code == 200 and "at least one event type" in refused.content.decode()
    response = client.post(edit, {"url": "https://127.0.0.2/new", "all_events": "on"})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.event_types) == ("https://127.0.0.2/new", [])
    assert len(console_events(AuditAction.WEBHOOK_UPDATED)) == 1
    assert "all" in page(client, url("webhooks", membership))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("https://127.0.0.1/hooks", "127.0.0.1 is a loopback address"),
        ("https://10.0.0.1/hooks", "10.0.0.1 is a private address"),
        ("https://169.254.169.254/latest", "169.254.169.254 is a link-local address"),
        ("https://[::1]/hooks", "is a loopback address"),
        ("https://localhost/hooks", "loopback"),
        ("http://example.com/hooks", "the URL must use https"),
    ],
)
def test_refused_urls_are_form_errors(member, settings, target, message) -> None:
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    client, membership = member(Role.DEVELOPER)
    response = create(client, membership, url=target, all_events="on")
    assert response.status_code == 200 and "secret" not in response.context
    assert message in response.content.decode()
    assert not WebhookEndpoint.objects.exists()
    # and on a change of an existing endpoint
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    endpoint = endpoint_of(membership)
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    edit = url("webhook_edit", membership, endpoint.endpoint_id)
    response = client.post(edit, {"url": target, "all_events": "on"})
    assert response.status_code == 200 and message in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.url == URL


def test_the_sixth_endpoint_is_refused_with_a_clear_message(member) -> None:
    client, membership = member(Role.DEVELOPER)
    for _ in range(5):
        endpoint_of(membership)
    html = page(client, url("webhooks", membership))
    assert "has 5 endpoints, the most it may have" in html
    response = create(client, membership, url=URL, all_events="on")
    assert response.status_code == 200 and "secret" not in response.context
    assert "already has 5 webhook endpoints" in response.content.decode()
    assert WebhookEndpoint.objects.filter(app=membership.app).count() == 5


def test_a_viewer_reads_and_changes_nothing(member) -> None:
    client, membership = member(Role.VIEWER)
    endpoint = endpoint_of(membership)
    listing = page(client, url("webhooks", membership))
    assert URL in listing and "Add an endpoint" not in listing
    detail = page(client, url("webhook_detail", membership, endpoint.endpoint_id))
    assert URL in detail
    for name in ("webhook_disable", "webhook_rotate", "webhook_edit", "webhook_test"):
        assert url(name, membership, endpoint.endpoint_id) not in detail, name
    for name in ("webhook_disable", "webhook_rotate", "webhook_edit", "webhook_test"):
        response = client.post(url(name, membership, endpoint.endpoint_id), {"url": URL})
        assert response.status_code == 403, name
    assert client.get(url("webhook_create", membership)).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.is_enabled and endpoint.url == URL
    assert not Delivery.objects.exists()


def test_actions_take_post_only(member) -> None:
    client, membership = member(Role.OWNER)
    endpoint = endpoint_of(membership)
    for name in ("webhook_disable", "webhook_enable", "webhook_test"):
        assert client.get(url(name, membership, endpoint.endpoint_id)).status_code == 405
    endpoint.refresh_from_db()
    assert endpoint.is_enabled and not Delivery.objects.exists()


def test_disable_enable_test_event_and_redeliver(member) -> None:
    client, membership = member(Role.DEVELOPER)
    endpoint = endpoint_of(membership)
    detail = url("webhook_detail", membership, endpoint.endpoint_id)
    assert client.post(url("webhook_disable", membership, endpoint.endpoint_id)).url == detail
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled and endpoint.disabled_at is not None
    refused = client.post(url("webhook_test", membership, endpoint.endpoint_id), follow=True)
    assert "enable it to send a test event" in refused.content.decode()
    assert not Delivery.objects.exists()
    client.post(url("webhook_enable", membership, endpoint.endpoint_id))
    endpoint.refresh_from_db()
    assert endpoint.is_enabled
    sent = client.post(url("webhook_test", membership, endpoint.endpoint_id), follow=True)
    assert "webhook.test event is on its way" in sent.content.decode()
    test = Delivery.objects.select_related("event").get(endpoint=endpoint)
    assert test.is_test and test.event.type == "webhook.test"
    Delivery.objects.filter(pk=test.pk).update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    client.post(url("webhook_redeliver", membership, endpoint.endpoint_id, test.pk))
    test.refresh_from_db()
    assert test.status == DeliveryStatus.PENDING and test.next_attempt_at is not None
    actions = [
        AuditAction.WEBHOOK_DISABLED,
        AuditAction.WEBHOOK_ENABLED,
        AuditAction.WEBHOOK_TEST_SENT,
        AuditAction.WEBHOOK_REDELIVERED,
    ]
    for action in actions:
        assert [e.actor for e in console_events(action)] == [membership.user.email], action


def test_a_test_event_reaches_a_real_receiver_and_its_answer_is_shown(member) -> None:
    client, membership = member(Role.DEVELOPER)
    with receiver() as hook:
        hook.answers = [503]
        created = services.create_endpoint(
            app=membership.app, url=hook.url, actor=Actor.operator("t")
        )
        endpoint = created.endpoint
        client.post(url("webhook_test", membership, endpoint.endpoint_id))
        delivery = Delivery.objects.get(endpoint=endpoint)
        assert services.attempt_delivery(delivery_id=delivery.pk).outcome.status_code == 503
        assert len(hook.requests) == 1
        got = hook.requests[0]
        assert verify(created.secret, got.headers, got.body)
        assert got.event["type"] == "webhook.test"
    html = page(client, url("webhook_detail", membership, endpoint.endpoint_id))
    assert "webhook.test" in html and "503" in html and "answered 503" in html
    assert created.secret not in html


def test_the_response_body_is_shown_escaped(member) -> None:
    client, membership = member(Role.VIEWER)
    endpoint = endpoint_of(membership)
    event = Event.objects.create(app=membership.app, type="user.created")
    delivery = Delivery.objects.create(event=event, endpoint=endpoint, status="failed")
    DeliveryAttempt.objects.create(
        delivery=delivery,
        status_code=500,
        latency_ms=42,
        response_body="<script>alert(1)</script>",
        error="",
    )
    DeliveryAttempt.objects.create(
        delivery=delivery, status_code=None, latency_ms=5000, error="timeout: ReadTimeoutError"
    )
    html = page(client, url("webhook_detail", membership, endpoint.endpoint_id))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "42 ms" in html and "500" in html and "timeout: ReadTimeoutError" in html
    assert html.index("timeout: ReadTimeoutError") < html.index("42 ms")  # latest first


def test_another_apps_endpoint_is_not_found(member) -> None:
    client, membership = member(Role.OWNER)
    other_app = AppFactory()
    theirs = services.create_endpoint(app=other_app, url=URL, actor=Actor.operator("t")).endpoint
    event = Event.objects.create(app=other_app, type="user.created")
    their_delivery = Delivery.objects.create(event=event, endpoint=theirs, status="failed")
    mine = endpoint_of(membership)
    for name in ("webhook_detail", "webhook_edit", "webhook_rotate"):
        assert client.get(url(name, membership, theirs.endpoint_id)).status_code == 404, name
    for name in ("webhook_disable", "webhook_test", "webhook_rotate", "webhook_edit"):
        response = client.post(url(name, membership, theirs.endpoint_id), {"url": URL})
        assert response.status_code == 404, name
    # their delivery under my endpoint: not found either
    path = url("webhook_redeliver", membership, mine.endpoint_id, their_delivery.pk)
    assert client.post(path).status_code == 404
    theirs.refresh_from_db()
    their_delivery.refresh_from_db()
    assert theirs.is_enabled and theirs.url == URL and their_delivery.status == "failed"
    assert not Delivery.objects.filter(endpoint=theirs, is_test=True).exists()
    assert other_app.name not in page(client, url("webhooks", membership))


def grow(endpoint: WebhookEndpoint, deliveries: int, attempts: int) -> None:
    now = timezone.now()
    for _ in range(deliveries):
        event = Event.objects.create(app_id=endpoint.app_id, type="user.created", created_at=now)
        delivery = Delivery.objects.create(event=event, endpoint=endpoint, attempts=attempts)
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(delivery=delivery, status_code=500, response_body="no")
            for _ in range(attempts)
        )


@pytest.mark.parametrize("name", ["webhooks", "webhook_detail", "webhook_edit", "webhook_rotate"])
def test_query_count_does_not_grow_with_the_data(
    member, django_assert_max_num_queries, name
) -> None:
    client, membership = member(Role.OWNER)
    first = endpoint_of(membership)
    path = url(name, membership, *([] if name == "webhooks" else [first.endpoint_id]))
    counts = []
    for endpoints, deliveries, attempts in ((1, 1, 1), (5, 30, 8)):
        while WebhookEndpoint.objects.filter(app=membership.app).count() < endpoints:
            endpoint_of(membership)
        for endpoint in WebhookEndpoint.objects.filter(app=membership.app):
            grow(endpoint, deliveries, attempts)
        with (
            django_assert_max_num_queries(PAGE_QUERIES),
            CaptureQueriesContext(connection) as captured,
        ):
            html = page(client, path)
        counts.append(len(captured))
    assert counts[0] == counts[1], counts
    if name == "webhook_detail":
        assert html.count('class="attempt"') == 25 * 5  # deliveries and attempts capped


def test_a_change_without_the_csrf_token_is_refused(member) -> None:
    client, membership = member(Role.OWNER)
    endpoint = endpoint_of(membership)
    client.handler.enforce_csrf_checks = True
    response = client.post(url("webhook_disable", membership, endpoint.endpoint_id))
    assert response.status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.is_enabled
