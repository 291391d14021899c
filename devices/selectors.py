"""Reads shared by more than one caller."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from accounts.models import App, LinkedUser
from devices.models import Device


def users_with_devices(*, app: App) -> QuerySet[LinkedUser]:
    """The app's users, each with its devices: the active one first, then the most recent."""
    devices = Device.objects.order_by("-is_active", "-activated_at", "-created_at")
    return LinkedUser.objects.filter(app=app).prefetch_related(Prefetch("devices", devices))
