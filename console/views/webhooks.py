"""Webhook endpoints of the app: the list, one endpoint with its recent deliveries and their
attempts; create and rotate (the signing secret shown once, in the answer to the POST that
made it), change URL and event types, enable/disable, send a test event, redeliver.

Everyone in the app reads; developers and owners change, by POST only. Every change goes
through events.services, whose refusals (https required, private address, the cap of
endpoints) come back as a message on the form, never as a server error. Test events and
redeliveries are sent by the webhook sweep, within seconds, as from the staff admin."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import OuterRef, Prefetch, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.admin_forms import issue_form_nonce, take_form_nonce
from console.access import actor, member_of_app
from console.models import Membership, Role
from console.webhook_forms import EndpointForm
from events import selectors, services
from events.models import MAX_ENDPOINTS_PER_APP, Delivery, DeliveryAttempt, WebhookEndpoint
from portal.errors import DomainError

DELIVERIES_SHOWN = 25
ATTEMPTS_SHOWN = 5
"""Attempts shown per delivery, latest first (a delivery retried for 3 days has about 10)."""
RESENT = (
    "This form was already sent: the secret it made was shown once and cannot be shown "
    "again. Rotate the secret if it was not copied."
)


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "console/not_found.html", status=404)


def _endpoint_of(membership: Membership, endpoint_id: str) -> WebhookEndpoint | None:
    """The app's endpoint; None for an unknown id or another app's, alike."""
    try:
        return selectors.endpoint_by_id(endpoint_id, app=membership.app)
    except DomainError:
        return None


def _to_detail(membership: Membership, endpoint: WebhookEndpoint) -> HttpResponse:
    return redirect(
        "console:webhook_detail", app_id=membership.app.app_id, endpoint_id=endpoint.endpoint_id
    )


@member_of_app()
def webhook_list(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    """The app's endpoints (at most MAX_ENDPOINTS_PER_APP), each with its latest delivery's
    status, in one query (the index delivery_endpoint_recent answers each subquery)."""
    latest = Delivery.objects.filter(endpoint=OuterRef("pk")).order_by("-created_at")
    endpoints = list(
        selectors.endpoints_of(membership.app).annotate(
            last_status=Subquery(latest.values("status")[:1]),
            last_delivery_at=Subquery(latest.values("created_at")[:1]),
        )
    )
    context = {
        "membership": membership,
        "endpoints": endpoints,
        "at_cap": len(endpoints) >= MAX_ENDPOINTS_PER_APP,
        "cap": MAX_ENDPOINTS_PER_APP,
        "can_change": membership.allows(Role.DEVELOPER),
    }
    return render(request, "console/webhooks.html", context)


def _shown_once(
    request: HttpRequest, membership: Membership, new: services.NewSecret, *, rotated: bool
) -> HttpResponse:
    context = {
        "membership": membership,
        "endpoint": new.endpoint,
        "secret": new.secret,
        "rotated": rotated,
        "previous_until": new.endpoint.previous_secret_expires_at if rotated else None,
    }
    return render(request, "console/webhook_secret_shown_once.html", context)


@never_cache
@member_of_app(Role.DEVELOPER)
def webhook_create(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    """A one-time form nonce makes a resent form (reload, back button) create nothing."""
    app = membership.app
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not take_form_nonce(request, request.POST.get("form_nonce", "")):
            messages.error(request, RESENT)
            return redirect("console:webhooks", app_id=app.app_id)
        try:
            new = services.create_endpoint(
                app=app,
                url=form.cleaned_data["url"],
                event_types=form.event_types(),
                actor=actor(request),
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return _shown_once(request, membership, new, rotated=False)
    count = WebhookEndpoint.objects.filter(app=app).count()
    context = {
        "membership": membership,
        "form": form,
        "form_nonce": issue_form_nonce(request),
        "at_cap": count >= MAX_ENDPOINTS_PER_APP,
        "cap": MAX_ENDPOINTS_PER_APP,
    }
    return render(request, "console/webhook_create.html", context)


@member_of_app()
def webhook_detail(
    request: HttpRequest, endpoint_id: str, *, membership: Membership
) -> HttpResponse:
    """The endpoint, its latest deliveries and each one's latest attempts: three queries
    whatever the log holds (the attempts in one window-limited prefetch)."""
    endpoint = _endpoint_of(membership, endpoint_id)
    if endpoint is None:
        return _not_found(request)
    attempts = DeliveryAttempt.objects.order_by("-attempted_at", "-id")[:ATTEMPTS_SHOWN]
    deliveries = list(
        Delivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related(Prefetch("attempt_log", queryset=attempts, to_attr="recent_attempts"))
        .order_by("-created_at")[:DELIVERIES_SHOWN]
    )
    now = timezone.now()
    overlap = endpoint.previous_secret_expires_at
    context = {
        "membership": membership,
        "endpoint": endpoint,
        "deliveries": deliveries,
        "deliveries_shown": DELIVERIES_SHOWN,
        "attempts_shown": ATTEMPTS_SHOWN,
        "previous_until": overlap if overlap and overlap > now else None,
        "can_change": membership.allows(Role.DEVELOPER),
        "sweep_seconds": settings.WEBHOOK_SWEEP_SECONDS,
    }
    return render(request, "console/webhook_detail.html", context)


@member_of_app(Role.DEVELOPER)
def webhook_edit(request: HttpRequest, endpoint_id: str, *, membership: Membership) -> HttpResponse:
    endpoint = _endpoint_of(membership, endpoint_id)
    if endpoint is None:
        return _not_found(request)
    initial = {
        "url": endpoint.url,
        "all_events": not endpoint.event_types,
        "events": endpoint.event_types,
    }
    form = EndpointForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_endpoint(
                endpoint=endpoint,
                url=form.cleaned_data["url"],
                event_types=form.event_types(),
                actor=actor(request),
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Endpoint {endpoint.endpoint_id} is saved.")
            return _to_detail(membership, endpoint)
    context = {"membership": membership, "endpoint": endpoint, "form": form}
    return render(request, "console/webhook_edit.html", context)


@never_cache
@member_of_app(Role.DEVELOPER)
def webhook_rotate(
    request: HttpRequest, endpoint_id: str, *, membership: Membership
) -> HttpResponse:
    endpoint = _endpoint_of(membership, endpoint_id)
    if endpoint is None:
        return _not_found(request)
    if request.method == "POST":
        if not take_form_nonce(request, request.POST.get("form_nonce", "")):
            messages.error(request, RESENT)
            return _to_detail(membership, endpoint)
        rotated = services.rotate_secret(endpoint=endpoint, actor=actor(request))
        return _shown_once(request, membership, rotated, rotated=True)
    context = {
        "membership": membership,
        "endpoint": endpoint,
        "form_nonce": issue_form_nonce(request),
    }
    return render(request, "console/webhook_rotate.html", context)


def _set_enabled(
    request: HttpRequest, endpoint_id: str, membership: Membership, *, enabled: bool
) -> HttpResponse:
    endpoint = _endpoint_of(membership, endpoint_id)
    if endpoint is None:
        return _not_found(request)
    services.set_endpoint_enabled(endpoint=endpoint, enabled=enabled, actor=actor(request))
    if enabled:
        messages.success(
            request,
            f"Endpoint {endpoint.endpoint_id} is enabled: new events go to it, and pending "
            "deliveries resume.",
        )
    else:
        messages.success(
            request,
            f"Endpoint {endpoint.endpoint_id} is disabled: no event is sent to it until it is "
            "enabled again.",
        )
    return _to_detail(membership, endpoint)


@member_of_app(Role.DEVELOPER)
@require_POST
def webhook_enable(
    request: HttpRequest, endpoint_id: str, *, membership: Membership
) -> HttpResponse:
    return _set_enabled(request, endpoint_id, membership, enabled=True)


@member_of_app(Role.DEVELOPER)
@require_POST
def webhook_disable(
    request: HttpRequest, endpoint_id: str, *, membership: Membership
) -> HttpResponse:
    return _set_enabled(request, endpoint_id, membership, enabled=False)


@member_of_app(Role.DEVELOPER)
@require_POST
def webhook_test(request: HttpRequest, endpoint_id: str, *, membership: Membership) -> HttpResponse:
    endpoint = _endpoint_of(membership, endpoint_id)
    if endpoint is None:
        return _not_found(request)
    if not endpoint.is_enabled:
        messages.error(request, "The endpoint is disabled: enable it to send a test event.")
    else:
        services.send_test_event(endpoint=endpoint, actor=actor(request))
        messages.success(
            request,
            "A webhook.test event is on its way (sent once, within about "
            f"{settings.WEBHOOK_SWEEP_SECONDS:.0f} seconds); reload to see the answer below.",
        )
    return _to_detail(membership, endpoint)


@member_of_app(Role.DEVELOPER)
@require_POST
def webhook_redeliver(
    request: HttpRequest, endpoint_id: str, delivery_id: int, *, membership: Membership
) -> HttpResponse:
    endpoint = _endpoint_of(membership, endpoint_id)
    delivery = (
        None
        if endpoint is None
        else Delivery.objects.select_related("event")
        .filter(pk=delivery_id, endpoint=endpoint)
        .first()
    )
    if endpoint is None or delivery is None:
        return _not_found(request)
    if not endpoint.is_enabled:
        messages.error(request, "The endpoint is disabled: enable it to redeliver.")
    else:
        services.redeliver(delivery=delivery, actor=actor(request))
        messages.success(
            request,
            f"Event {delivery.event.event_id} is sent again, with retries for 3 days should "
            "it fail.",
        )
    return _to_detail(membership, endpoint)
