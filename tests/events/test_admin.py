"""The staff admin of webhooks: endpoints created with the secret shown once, rotated,
disabled; the delivery log with redeliver and a test event; constant query counts."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent
from accounts.roles import KEY_ADMINISTRATORS, SUPPORT, setup_roles
from events import crypto, services
from events.models import Delivery, DeliveryStatus, WebhookEndpoint
from tests.admin.conftest import staff_user
from tests.admin.pages import action_page
from tests.factories import AppFactory
from tests.staff import signed_in

pytestmark = pytest.mark.django_db
ADD = "admin:events_webhookendpoint_add"


@pytest.fixture
def key_admin() -> Client:
    setup_roles()
    return signed_in(staff_user("keyadmin", KEY_ADMINISTRATORS))


@pytest.fixture
def support() -> Client:
    setup_roles()
    return signed_in(staff_user("support", SUPPORT))


def _queries(client: Client, url: str) -> int:
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_create_an_endpoint_shows_the_secret_once(key_admin, hook):
    app = AppFactory()
    nonce = key_admin.get(reverse(ADD)).context["form_nonce"]
    form = {"app": app.pk, "url": hook.url, "events": ["user.deleted"], "form_nonce": nonce}
    response = key_admin.post(reverse(ADD), form)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    [(_, secret)] = response.context["secrets"]
    endpoint = WebhookEndpoint.objects.get()
    assert crypto.decrypt(endpoint.secret_encrypted) == secret
    assert endpoint.event_types == ["user.deleted"]
    again = key_admin.post(reverse(ADD), form, follow=True)
    assert WebhookEndpoint.objects.count() == 1 and secret not in again.text
    page = key_admin.get(reverse("admin:events_webhookendpoint_change", args=[endpoint.pk]))
    assert secret not in page.text and endpoint.endpoint_id in page.text


def test_a_refused_url_is_a_form_error(key_admin, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    nonce = key_admin.get(reverse(ADD)).context["form_nonce"]
    form = {"app": AppFactory().pk, "url": "http://10.0.0.1/x", "form_nonce": nonce}
    response = key_admin.post(reverse(ADD), form)
    assert "10.0.0.1 is a private address" in response.text
    assert not WebhookEndpoint.objects.exists()


def test_rotate_and_disable(key_admin, hook):
    endpoint = services.create_endpoint(
        app=AppFactory(), url=hook.url, actor=Actor.operator("t")
    ).endpoint
    response = key_admin.post(action_page(endpoint, "rotate_secret"), {"ids": endpoint.pk})
    [(_, secret)] = response.context["secrets"]
    endpoint.refresh_from_db()
    assert crypto.decrypt(endpoint.secret_encrypted) == secret
    assert endpoint.previous_secret_encrypted
    key_admin.post(action_page(endpoint, "disable"), {"ids": endpoint.pk})
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled and endpoint.app.webhook_events == ""
    actions = set(AuditEvent.objects.filter(actor="keyadmin").values_list("action", flat=True))
    assert actions == {AuditAction.WEBHOOK_SECRET_ROTATED, AuditAction.WEBHOOK_DISABLED}


def test_support_redelivers_and_sends_a_test_event_but_cannot_manage(support, hook):
    app = AppFactory()
    endpoint = services.create_endpoint(app=app, url=hook.url, actor=Actor.operator("t")).endpoint
    services.send_test_event(endpoint=endpoint, actor=Actor.operator("t"))
    services.attempt_delivery(delivery_id=Delivery.objects.get().pk)
    delivery = Delivery.objects.get()
    page = support.get(reverse("admin:events_delivery_change", args=[delivery.pk]))
    assert "answered 200" in page.text  # the attempt log, with the response's first bytes
    support.post(action_page(delivery, "redeliver"), {"ids": delivery.pk})
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    support.post(action_page(endpoint, "send_test"), {"ids": endpoint.pk})
    assert Delivery.objects.filter(is_test=True).count() == 2
    assert support.get(reverse(ADD)).status_code == 403
    support.post(action_page(endpoint, "disable"), {"ids": endpoint.pk})
    assert WebhookEndpoint.objects.get().is_enabled


def test_admin_pages_cost_the_same_queries_with_more_rows(key_admin, hook):
    app = AppFactory()
    endpoint = services.create_endpoint(app=app, url=hook.url, actor=Actor.operator("t")).endpoint

    def grow(n: int) -> None:
        for _ in range(n):
            services.send_test_event(endpoint=endpoint, actor=Actor.operator("t"))

    pages = [
        reverse("admin:events_webhookendpoint_changelist"),
        reverse("admin:events_delivery_changelist"),
        reverse("admin:events_webhookendpoint_change", args=[endpoint.pk]),
    ]
    grow(2)
    before = [_queries(key_admin, page) for page in pages]
    grow(20)
    services.create_endpoint(app=AppFactory(), url=hook.url, actor=Actor.operator("t"))
    assert [_queries(key_admin, page) for page in pages] == before
