"""`{% staff_dashboard %}`: the admin index's dashboard, each part shown to staff who may
view what it counts. The chart is drawn here as plain SVG geometry: no script, no external
asset, readable without JavaScript."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django import template
from django.utils import timezone

from accounts.dashboard import CodeActivity, code_activity, keys_expiring_soon
from accounts.selectors import api_key_status
from devices.dashboard import active_devices_by_kind
from devices.models import FormFactor, Platform

register = template.Library()

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: list[tuple[float, float, int, str]]
    """(x, y, value, label) per point."""
    total: int

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in self.points)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    series: list[Series]
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at least `value` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def line_chart(
    labels: list[str], lines: list[tuple[str, str, list[int]]], *, tick_every: int
) -> Chart:
    """Lines of (name, colour, values), one value per label, on one scale from 0; every
    `tick_every`-th label is written under the axis. The console's overview draws with it too."""
    top = _nice_ceiling(max(max(values) for _, _, values in lines))
    last = max(len(labels) - 1, 1)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + plot_width * i / last

    def y(value: float) -> float:
        return TOP + plot_height * (1 - value / top)

    series = [
        Series(
            name,
            color,
            [(x(i), y(v), v, labels[i]) for i, v in enumerate(values)],
            sum(values),
        )
        for name, color, values in lines
    ]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
        series=series,
        y_ticks=[(y(v), f"{v:g}") for v in (0, top / 2, top)],
        x_ticks=[(x(i), labels[i]) for i in range(0, len(labels), tick_every)],
    )


def code_chart(activity: CodeActivity) -> Chart:
    lines = [
        ("issued", "#417690", activity.issued),
        ("redeemed", "#3a8a3a", activity.redeemed),
        ("expired", "#c9642a", activity.expired),
    ]
    return line_chart([f"{hour:%H}:00" for hour in activity.hours], lines, tick_every=3)


@register.inclusion_tag("admin/dashboard.html", takes_context=True)
def staff_dashboard(context: template.Context) -> dict[str, Any]:
    user = context["request"].user
    now = timezone.now()
    parts: dict[str, Any] = {}
    if user.has_perm("accounts.view_authcode"):
        activity = code_activity(now=now)
        parts["chart"] = code_chart(activity)
        parts["hourly"] = list(
            zip(activity.hours, activity.issued, activity.redeemed, activity.expired, strict=True)
        )
    if user.has_perm("devices.view_device"):
        counts = active_devices_by_kind()
        parts["form_factors"] = FormFactor.labels
        parts["devices"] = [
            (platform.label, [counts[(platform.value, f)] for f in FormFactor.values])
            for platform in Platform
        ]
        parts["devices_total"] = sum(counts.values())
    if user.has_perm("accounts.view_apikey"):
        parts["expiring_keys"] = [
            (key, api_key_status(key, rotated=key.rotated, now=now))
            for key in keys_expiring_soon(now=now)
        ]
    return parts
