"""The app at a glance: does the integration work? Codes issued and redeemed per day, the
redemption rate, new and restored users, active devices, keys about to expire."""

from __future__ import annotations

import datetime as dt

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.dashboard import app_activity, keys_expiring_soon
from accounts.selectors import api_key_status
from console.access import member_of_app
from console.models import Membership
from devices.dashboard import active_devices_by_kind
from devices.models import FormFactor, Platform
from devices.templatetags.staff_dashboard import line_chart

DAYS = 30
EXPIRING_WITHIN = dt.timedelta(days=14)


@member_of_app()
def overview(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    app = membership.app
    now = timezone.now()
    activity = app_activity(app_id=app.pk, now=now, days=DAYS)
    chart = line_chart(
        [f"{day:%m-%d}" for day in activity.days],
        [
            ("issued", "#417690", activity.codes_issued),
            ("redeemed", "#3a8a3a", activity.codes_redeemed),
        ],
        tick_every=5,
    )
    counts = active_devices_by_kind(app_id=app.pk)
    expiring = [
        (key, api_key_status(key, rotated=key.rotated, now=now))
        for key in keys_expiring_soon(now=now, within=EXPIRING_WITHIN, app_id=app.pk)
    ]
    context = {
        "membership": membership,
        "activity": activity,
        "chart": chart,
        "daily": list(
            zip(
                activity.days,
                activity.codes_issued,
                activity.codes_redeemed,
                activity.users_new,
                activity.users_restored,
                strict=True,
            )
        ),
        "totals": {
            name: activity.total(name)
            for name in ("codes_issued", "codes_redeemed", "users_new", "users_restored")
        },
        "rate": None if activity.redemption_rate is None else f"{activity.redemption_rate:.1%}",
        "form_factors": FormFactor.labels,
        "devices": [
            (platform.label, [counts[(platform.value, f)] for f in FormFactor.values])
            for platform in Platform
        ],
        "devices_total": sum(counts.values()),
        "expiring": [(key, status) for key, status in expiring if not key.rotated],
        "ending_grace": [(key, status) for key, status in expiring if key.rotated],
        "days": DAYS,
    }
    return render(request, "console/overview.html", context)
