"""Staff admin of webhooks: endpoints (create, rotate the secret, disable/enable, send a test
event) and the read-only delivery log with "redeliver". Every change goes through
events.services; secrets appear only on the page answering the POST that made them."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join

from accounts.admin_actions import (
    Created,
    Outcome,
    StaffAction,
    StaffActionsMixin,
    secret_add_view,
)
from accounts.admin_base import StaffAdmin, admin_change_url, app_name, clipped
from accounts.audit import Actor
from accounts.lifecycle import EventType
from accounts.models import App
from events import selectors, services
from events.models import Delivery, WebhookEndpoint
from portal.errors import DomainError, ErrorCode

MANAGE = "events.manage_webhookendpoint"
REDELIVER = "events.redeliver_webhookendpoint"
ATTEMPTS_SHOWN = 20


class NewEndpointForm(forms.Form):
    app = forms.ModelChoiceField(queryset=App.objects.filter(is_active=True))
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every event type.",
    )


def _rotate(endpoint: WebhookEndpoint, actor: Actor, data: dict) -> Outcome:
    rotated = services.rotate_secret(endpoint=endpoint, actor=actor)
    return Outcome(
        f"Endpoint {endpoint.endpoint_id} has a new signing secret; the old one keeps signing "
        "beside it for 24 hours.",
        shown_once=(f"Signing secret of endpoint {endpoint.endpoint_id}", rotated.secret),
    )


def _set_enabled(enabled: bool):
    def perform(endpoint: WebhookEndpoint, actor: Actor, data: dict) -> Outcome:
        services.set_endpoint_enabled(endpoint=endpoint, enabled=enabled, actor=actor)
        return Outcome(
            f"Endpoint {endpoint.endpoint_id} is {'enabled' if enabled else 'disabled'}."
        )

    def check(endpoint: WebhookEndpoint) -> None:
        if endpoint.is_enabled == enabled:
            state = "enabled" if enabled else "disabled"
            raise DomainError(ErrorCode.INVALID_REQUEST, f"the endpoint is already {state}")

    return perform, check


_enable, _check_enable = _set_enabled(True)
_disable, _check_disable = _set_enabled(False)


def _send_test(endpoint: WebhookEndpoint, actor: Actor, data: dict) -> Outcome:
    services.send_test_event(endpoint=endpoint, actor=actor)
    return Outcome(
        f"A webhook.test event is on its way to {endpoint.endpoint_id}; its delivery log shows "
        "the answer."
    )


def _check_testable(endpoint: WebhookEndpoint) -> None:
    if not endpoint.is_enabled:
        raise DomainError(ErrorCode.INVALID_REQUEST, "the endpoint is disabled")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(StaffActionsMixin, StaffAdmin):
    list_display = ["endpoint", app_name, "url_cell", "types", "is_enabled", "failing_since"]
    list_select_related = ["app"]
    list_filter = ["is_enabled"]
    search_fields = ["endpoint_id__exact"]
    search_help_text = "An endpoint id."
    fields = [
        "endpoint_id",
        "app",
        "url",
        "types",
        "is_enabled",
        "created_at",
        "disabled_at",
        "failing_since",
        "previous_secret_expires_at",
        "recent_deliveries",
    ]
    readonly_fields = fields
    staff_actions = (
        StaffAction(
            name="rotate_secret",
            label="Rotate the signing secret",
            permission=MANAGE,
            perform=_rotate,
            check=lambda endpoint: None,
            consequence=lambda endpoint: (
                "A new signing secret is made and shown once; the current one keeps signing "
                "beside it (two v1= signatures) for 24 hours."
            ),
            single=True,
        ),
        StaffAction(
            name="disable",
            label="Disable",
            permission=MANAGE,
            perform=_disable,
            check=_check_disable,
            consequence=lambda endpoint: (
                f"No event is sent to {endpoint.url} any more; deliveries still pending wait, "
                "and fail after 3 days unless the endpoint is enabled again."
            ),
        ),
        StaffAction(
            name="enable",
            label="Enable",
            permission=MANAGE,
            perform=_enable,
            check=_check_enable,
            consequence=lambda endpoint: "Events are sent to it again, pending ones first.",
        ),
        StaffAction(
            name="send_test",
            label="Send test event",
            permission=REDELIVER,
            perform=_send_test,
            check=_check_testable,
            consequence=lambda endpoint: (
                f"A signed webhook.test event is POSTed once to {endpoint.url}."
            ),
            single=True,
        ),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE)

    @admin.display(description="endpoint id")
    def endpoint(self, endpoint: WebhookEndpoint) -> str:
        return endpoint.endpoint_id

    @admin.display(description="URL")
    def url_cell(self, endpoint: WebhookEndpoint) -> str:
        return clipped(endpoint.url)

    @admin.display(description="events")
    def types(self, endpoint: WebhookEndpoint) -> str:
        shown = selectors.event_types_shown(endpoint)
        return format_html('<span class="wraps">{}</span>', ", ".join(shown))

    @admin.display(description="latest deliveries")
    def recent_deliveries(self, endpoint: WebhookEndpoint) -> str:
        rows = [
            (admin_change_url(d), d.event.type, d.event.event_id, d.status, d.attempts)
            for d in selectors.recent_deliveries(endpoint, limit=ATTEMPTS_SHOWN)
        ]
        if not rows:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join("", '<li><a href="{}">{} {}</a>: {}, {} attempt(s)</li>', rows),
        )

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """Creates the endpoint through the service; its secret is shown in the answer to
        this POST only."""

        def create(data: dict, actor: Actor) -> Created:
            made = services.create_endpoint(
                app=data["app"], url=data["url"], event_types=data["events"], actor=actor
            )
            endpoint = made.endpoint
            self.message_user(request, f"Endpoint {endpoint.endpoint_id} created.")
            what = f"Signing secret of endpoint {endpoint.endpoint_id} ({endpoint.app})"
            return Created(endpoint, what, made.secret)

        return secret_add_view(
            request,
            self,
            form=NewEndpointForm(request.POST or None, initial={"app": request.GET.get("app")}),
            create=create,
            resent="This form was already sent: the secret it made was shown once. Rotate it "
            "if it was not copied.",
            shown_once_note="The signing secret is shown once, on the next page; it is kept "
            "encrypted.",
            submit_label="Create the endpoint",
        )


def _redeliver(delivery: Delivery, actor: Actor, data: dict) -> Outcome:
    services.redeliver(delivery=delivery, actor=actor)
    return Outcome(f"Delivery {delivery.pk} of event {delivery.event.event_id} is sent again.")


def _check_redeliverable(delivery: Delivery) -> None:
    if not delivery.endpoint.is_enabled:
        raise DomainError(ErrorCode.INVALID_REQUEST, "its endpoint is disabled")


@admin.register(Delivery)
class DeliveryAdmin(StaffActionsMixin, StaffAdmin):
    """The delivery log: one row per event and endpoint, its attempts on its page."""

    list_display = [
        "pk",
        "event_type",
        "event_id",
        "endpoint_id",
        "status",
        "attempts",
        "created_at",
    ]
    list_select_related = ["event", "endpoint"]
    list_filter = ["status"]
    search_fields = ["event__event_id__exact"]
    search_help_text = "An event id (Portal-Event-Id)."
    fields = [
        "event_type",
        "event_id",
        "endpoint_id",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
        "completed_at",
        "attempt_log",
    ]
    readonly_fields = fields
    staff_actions = (
        StaffAction(
            name="redeliver",
            label="Redeliver",
            permission=REDELIVER,
            perform=_redeliver,
            check=_check_redeliverable,
            consequence=lambda delivery: (
                f"Event {delivery.event.event_id} is POSTed again to {delivery.endpoint.url}, "
                "with retries for 3 days should it fail."
            ),
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("event", "endpoint")

    @admin.display(description="type")
    def event_type(self, delivery: Delivery) -> str:
        return delivery.event.type

    @admin.display(description="event id")
    def event_id(self, delivery: Delivery) -> str:
        return delivery.event.event_id

    @admin.display(description="endpoint")
    def endpoint_id(self, delivery: Delivery) -> str:
        endpoint = delivery.endpoint
        return format_html('<a href="{}">{}</a>', admin_change_url(endpoint), endpoint.endpoint_id)

    @admin.display(description="attempts (latest first)")
    def attempt_log(self, delivery: Delivery) -> str:
        attempts = selectors.attempts_of(delivery)[:ATTEMPTS_SHOWN]
        rows = [
            (
                attempt.attempted_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                attempt.status_code or "-",
                attempt.latency_ms,
                attempt.error or "-",
                attempt.response_body[:1024],
            )
            for attempt in attempts
        ]
        if not rows:
            return "-"
        return format_html(
            "<table><tr><th>time</th><th>status</th><th>ms</th><th>error</th>"
            "<th>response (first 1 KB)</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                rows,
            ),
        )
