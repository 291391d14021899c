"""Reads for the staff dashboard about devices."""

from __future__ import annotations

from django.db.models import Count

from devices.models import Device, FormFactor, Platform


def active_devices_by_kind(*, app_id: int | None = None) -> dict[tuple[str, str], int]:
    """Active devices (of one app, with `app_id`) per (platform, form factor), every pair
    present. Counted from a partial index on active devices alone."""
    devices = Device.objects.filter(is_active=True)
    if app_id is not None:
        devices = devices.filter(app_id=app_id)
    rows = devices.values("platform", "form_factor").annotate(n=Count("*")).order_by()
    counts = {(row["platform"], row["form_factor"]): row["n"] for row in rows}
    return {(p, f): counts.get((p, f), 0) for p in Platform.values for f in FormFactor.values}
