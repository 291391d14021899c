"""The app's audit log: newest first, filtered by action, actor and days, in keyset pages
(no OFFSET, no COUNT): each page is one range of an index that starts with the app
(audit_app_recent, audit_app_action, audit_app_actor)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode

from accounts.models import ActorType, AuditAction, AuditEvent
from console.access import member_of_app
from console.models import Membership
from console.page_forms import AuditFilterForm

PER_PAGE = 50
DEVICE_ACTIONS = {
    AuditAction.USER_CREATED,
    AuditAction.USER_RESTORED,
    AuditAction.DEVICE_ACTIVATED,
    AuditAction.DEVICE_DEACTIVATED,
}
"""What a device does itself (redemptions, resets): the bulk of an app's events, found at
once in the app's whole log; the indexes by action and by actor leave them out. The actor
filter names people, keys and jobs: a device's events are on its user's page."""


def cursor(event: AuditEvent) -> str:
    return f"{event.occurred_at.isoformat()}~{event.pk}"


@member_of_app()
def audit_log(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    events: list[AuditEvent] = []
    older = None
    if form.is_valid():
        data = form.cleaned_data
        found = AuditEvent.objects.filter(app=membership.app)
        if data["action"]:
            found = found.filter(action=data["action"])
            if data["action"] not in DEVICE_ACTIONS:  # so that audit_app_action serves it
                found = found.exclude(actor_type=ActorType.DEVICE)
        if data["actor"]:
            found = found.filter(actor=data["actor"]).exclude(actor_type=ActorType.DEVICE)
        if data["since"]:
            found = found.filter(occurred_at__gte=_start_of(data["since"]))
        if data["until"] and data["until"] < dt.date.max:  # the day after must exist
            found = found.filter(occurred_at__lt=_start_of(data["until"] + dt.timedelta(days=1)))
        if data["before"]:
            when, pk = data["before"]
            found = found.filter(occurred_at__lte=when).exclude(occurred_at=when, pk__gte=pk)
        events = list(found.order_by("-occurred_at", "-id")[: PER_PAGE + 1])
        if len(events) > PER_PAGE:
            events = events[:PER_PAGE]
            query: dict[str, Any] = {
                name: request.GET[name]
                for name in ("action", "actor", "since", "until")
                if request.GET.get(name)
            }
            older = urlencode({**query, "before": cursor(events[-1])})
    context = {
        "membership": membership,
        "form": form,
        "events": events,
        "older": older,
        "paged": bool(request.GET.get("before")),
        "filters": urlencode(
            {n: request.GET[n] for n in ("action", "actor", "since", "until") if request.GET.get(n)}
        ),
    }
    return render(request, "console/audit.html", context)


def _start_of(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
