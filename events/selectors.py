"""Reads of webhooks shared by the commands, the admin and the console."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import App
from events.models import Delivery, DeliveryAttempt, WebhookEndpoint
from portal.errors import DomainError, ErrorCode

ALL_EVENTS = "*"
"""How an endpoint that wants every event type shows its types (`["*"]`)."""


def event_types_shown(endpoint: WebhookEndpoint) -> list[str]:
    return list(endpoint.event_types) or [ALL_EVENTS]


def endpoint_by_id(endpoint_id: str, *, app: App | None = None) -> WebhookEndpoint:
    """The endpoint, with its app; NOT_FOUND for an unknown id or, given `app`, another app's."""
    endpoints = WebhookEndpoint.objects.select_related("app").filter(endpoint_id=endpoint_id)
    if app is not None:
        endpoints = endpoints.filter(app=app)
    endpoint = endpoints.first()
    if endpoint is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"no webhook endpoint {endpoint_id!r}")
    return endpoint


def endpoints_of(app: App | None = None) -> QuerySet[WebhookEndpoint]:
    endpoints = WebhookEndpoint.objects.select_related("app").order_by("app__name", "created_at")
    return endpoints if app is None else endpoints.filter(app=app)


def recent_deliveries(endpoint: WebhookEndpoint, *, limit: int = 50) -> QuerySet[Delivery]:
    """The endpoint's latest deliveries, newest first, with their events (index
    delivery_endpoint_recent)."""
    return (
        Delivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .order_by("-created_at")[:limit]
    )


def attempts_of(delivery: Delivery) -> QuerySet[DeliveryAttempt]:
    return DeliveryAttempt.objects.filter(delivery=delivery).order_by("-attempted_at", "-id")


def endpoint_summary(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What listings show of an endpoint: never its secret."""
    return {
        "endpoint_id": endpoint.endpoint_id,
        "app_id": endpoint.app.app_id,
        "url": endpoint.url,
        "events": event_types_shown(endpoint),
        "enabled": endpoint.is_enabled,
        "created_at": endpoint.created_at,
        "disabled_at": endpoint.disabled_at,
        "failing_since": endpoint.failing_since,
    }
