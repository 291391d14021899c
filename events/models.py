"""Webhook endpoints, the outbox of lifecycle events, and their deliveries with a log of
every attempt.

Rows here refer to each other without database cascades (DO_NOTHING): the retention sweep
deletes attempts, then deliveries, then events in bounded batches, each a plain DELETE that
loads nothing into Python. Endpoints are disabled, never deleted, like apps and keys."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts import crypto
from accounts.models import App

MAX_ENDPOINTS_PER_APP = 5


class WebhookEndpoint(models.Model):
    """Where an app wants its events POSTed. The signing secret must be available in clear
    to sign, so it is the one secret stored encrypted (events.crypto), not digested; the
    previous one keeps signing too until `previous_secret_expires_at` after a rotation."""

    endpoint_id = models.CharField(
        max_length=24, unique=True, default=crypto.public_id, editable=False
    )
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    event_types = models.JSONField(
        default=list, blank=True, help_text="The event types it wants; empty means all."
    )
    is_enabled = models.BooleanField(default=True)
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Since when every attempt has failed (cleared by a success): 3 days of it disables. A
    # failure more than FAILURE_STREAK_GAP after the last one starts a new streak: the quiet
    # time between them proves nothing either way.
    failing_since = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # While failing, one attempt at a time (the probe) holds this lease: the deliveries queued
    # for it before it failed do not each hold a worker for the full timeout.
    probing_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["app__name", "created_at"]
        verbose_name = "webhook endpoint"
        permissions = [
            ("manage_webhookendpoint", "Can create, rotate and disable webhook endpoints"),
            ("redeliver_webhookendpoint", "Can redeliver events and send test events"),
        ]

    def __str__(self) -> str:
        return f"endpoint {self.endpoint_id}"

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class Event(models.Model):
    """One lifecycle event: written in the transaction of the change it announces (the
    outbox), then fanned out into a delivery per endpoint that wants it."""

    # Unique by a constraint rather than `unique=True`, which on PostgreSQL adds a second,
    # pattern-ops index that every outbox insert would pay for.
    event_id = models.CharField(max_length=24, default=crypto.public_id)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+", db_index=False)
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event_id"], name="event_event_id_unique")]
        indexes = [
            # The dispatcher's queue: only the few events not fanned out yet.
            models.Index(
                fields=["created_at"],
                condition=Q(dispatched_at__isnull=True),
                name="event_undispatched",
            ),
            models.Index(fields=["created_at"], name="event_created_at"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Delivery(models.Model):
    """One event to one endpoint, until it succeeds or gives up after WEBHOOK_RETRY_FOR.
    `next_attempt_at` is also the lease of an attempt under way: a worker that dies in the
    middle leaves it due again once the lease runs out, so the event is sent again, not lost."""

    event = models.ForeignKey(
        Event, on_delete=models.DO_NOTHING, related_name="deliveries", db_index=False
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.DO_NOTHING, related_name="deliveries", db_index=False
    )
    status = models.CharField(max_length=16, choices=DeliveryStatus, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    is_test = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["event", "endpoint"],
                condition=Q(is_test=False),
                name="one_delivery_per_event_and_endpoint",
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="delivery_due",
            ),
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_recent"),
            models.Index(fields=["created_at"], name="delivery_created_at"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk}"


class DeliveryAttempt(models.Model):
    """The log of one POST: kept WEBHOOK_LOG_RETENTION (30 days)."""

    delivery = models.ForeignKey(
        Delivery, on_delete=models.DO_NOTHING, related_name="attempt_log", db_index=False
    )
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_body = models.TextField(blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-attempted_at", "-id"]
        indexes = [
            models.Index(fields=["delivery", "-attempted_at"], name="attempt_delivery_recent"),
            models.Index(fields=["attempted_at"], name="attempt_attempted_at"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.pk} of delivery {self.delivery_id}"
