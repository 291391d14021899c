"""Reads for the staff dashboard about devices."""

from __future__ import annotations

from django.db.models import Count

from devices.models import Device, FormFactor, Platform


def active_devices_by_kind() -> dict[tuple[str, str], int]:
    """Active devices per (platform, form factor), every pair present. Counted from the
    partial index on active devices alone."""
    rows = (
        Device.objects.filter(is_active=True)
        .values("platform", "form_factor")
        .annotate(n=Count("*"))
        .order_by()
    )
    counts = {(row["platform"], row["form_factor"]): row["n"] for row in rows}
    return {(p, f): counts.get((p, f), 0) for p in Platform.values for f in FormFactor.values}
