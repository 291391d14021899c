"""Devices' part in account operations, connected to accounts' signals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.dispatch import receiver

from accounts.models import LinkedUser
from accounts.signals import user_deleted
from devices import services


@receiver(user_deleted)
def deactivate_devices_of_deleted_user(
    sender: type, *, user: LinkedUser, now: dt.datetime, **kwargs: Any
) -> None:
    services.retire_devices_of_deleted_user(user=user, now=now)
