"""Every write on devices: redemption with the activation policy, access tokens, reset."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import crypto
from accounts.models import AuthCode, AuthCodeStatus, LinkedUser, UserStatus
from devices.models import Device, FormFactor, InactiveReason
from devices.policy import decide
from portal.errors import ApiError, ErrorCode

DEVICE_FIELDS = ("platform", "form_factor", "model", "os_version", "app_version", "sdk_version")


@dataclass(frozen=True)
class DeviceInfo:
    install_id: str
    platform: str
    form_factor: str
    model: str = ""
    os_version: str = ""
    app_version: str = ""
    sdk_version: str = ""


@dataclass(frozen=True)
class Redemption:
    user: LinkedUser
    device: Device
    access_token: str
    """Shown once; only its digest is stored on the device."""
    restored: bool
    retried: bool
    """True when this was the SDK retrying a redemption it had already made (answer 200)."""


def _new_access_token(device: Device, now: dt.datetime) -> str:
    token = crypto.new_secret()
    device.access_token_digest = crypto.digest(token)
    device.access_token_expires_at = now.replace(microsecond=0) + dt.timedelta(
        seconds=settings.ACCESS_TOKEN_TTL_SECONDS
    )
    return token


def redeem_auth_code(
    *, code: str, app_id: str, device: DeviceInfo, now: dt.datetime | None = None
) -> Redemption:
    """Uses a code once and activates the device under the per-user policy, atomically.

    The user row is locked for the whole step, so two devices of one user redeeming at once
    take turns; the code is consumed by a conditional UPDATE, so one code is used once even
    by requests that raced past the first read. Any refusal rolls everything back.
    """
    now = now or timezone.now()
    with transaction.atomic():
        auth_code = (
            AuthCode.objects.select_related("user__app")
            .select_for_update(of=("user",))
            .filter(code_digest=crypto.digest(code))
            .first()
        )
        if auth_code is None or auth_code.user.app.app_id != app_id:
            raise ApiError(ErrorCode.INVALID_AUTH_CODE, "Unknown authentication code.")
        user = auth_code.user
        if not user.app.is_active:
            raise ApiError(ErrorCode.APP_DISABLED, "This app is disabled.")
        if not user.is_usable:
            raise ApiError(ErrorCode.USER_DISABLED, "This user is deleted or disabled.")

        consumed = (
            auth_code.status == AuthCodeStatus.ISSUED
            and auth_code.expires_at > now
            and AuthCode.objects.filter(
                pk=auth_code.pk, status=AuthCodeStatus.ISSUED, expires_at__gt=now
            ).update(
                status=AuthCodeStatus.REDEEMED,
                redeemed_at=now,
                redeemed_install_id=device.install_id,
            )
            == 1
        )
        if not consumed:
            auth_code.refresh_from_db(fields=["status", "redeemed_install_id"])
            return _retry(auth_code=auth_code, user=user, device=device, now=now)

        restored = user.status == UserStatus.ACTIVE
        activated = _activate(user=user, info=device, now=now)
        if user.status == UserStatus.PENDING:
            LinkedUser.objects.filter(pk=user.pk).update(status=UserStatus.ACTIVE)
            user.status = UserStatus.ACTIVE
    return Redemption(
        user=user, device=activated[0], access_token=activated[1], restored=restored, retried=False
    )


def _retry(*, auth_code: AuthCode, user: LinkedUser, device: DeviceInfo, now: dt.datetime):
    """A code that was not consumed now: the SDK's retry of its own redemption within the
    code's lifetime gets a fresh token for the same device; anything else is refused."""
    if auth_code.status == AuthCodeStatus.REDEEMED:
        if auth_code.redeemed_install_id == device.install_id and auth_code.expires_at > now:
            existing = Device.objects.filter(
                app_id=auth_code.app_id, install_id=device.install_id, user=user
            ).first()
            if existing is not None:
                token = _new_access_token(existing, now)
                existing.last_seen_at = now
                existing.save(
                    update_fields=["access_token_digest", "access_token_expires_at", "last_seen_at"]
                )
                return Redemption(
                    user=user, device=existing, access_token=token, restored=True, retried=True
                )
        raise ApiError(ErrorCode.AUTH_CODE_ALREADY_USED, "This authentication code was used.")
    if auth_code.status == AuthCodeStatus.VOID:
        raise ApiError(ErrorCode.INVALID_AUTH_CODE, "This authentication code was voided.")
    raise ApiError(ErrorCode.AUTH_CODE_EXPIRED, "This authentication code has expired.")


def _activate(*, user: LinkedUser, info: DeviceInfo, now: dt.datetime) -> tuple[Device, str]:
    """Applies the activation policy for the incoming device; the caller holds the user lock."""
    rows = list(
        Device.objects.select_related("user").filter(
            Q(user=user, is_active=True) | Q(app_id=user.app_id, install_id=info.install_id)
        )
    )
    device = next((row for row in rows if row.install_id == info.install_id), None)
    if device is not None and device.user_id != user.pk:
        if device.user.status != UserStatus.DELETED:
            raise ApiError(
                ErrorCode.INSTALL_ID_CONFLICT, "This install id is already bound to another user."
            )
        # The install's previous user was deleted and awaits its purge: the install is free.
        device.delete()
        device = None
    current = next(
        (row for row in rows if row.is_active and row.install_id != info.install_id), None
    )
    decision = decide(
        current=FormFactor(current.form_factor) if current else None,
        incoming=FormFactor(info.form_factor),
    )
    if decision.deactivate_current:
        Device.objects.filter(pk=current.pk).update(
            is_active=False, inactive_reason=decision.reason, deactivated_at=now
        )

    if device is None:
        device = Device(app_id=user.app_id, user=user, install_id=info.install_id, created_at=now)
    for field in DEVICE_FIELDS:
        setattr(device, field, getattr(info, field))
    device.last_seen_at = now
    if decision.activate_incoming:
        if not device.is_active:
            device.activated_at = now
        device.is_active, device.inactive_reason, device.deactivated_at = True, None, None
    else:
        if device.is_active or device.inactive_reason != decision.reason:
            device.deactivated_at = now
        device.is_active, device.inactive_reason = False, decision.reason
    token = _new_access_token(device, now)
    device.save()
    return device, token


def retire_devices_of_deleted_user(*, user: LinkedUser, now: dt.datetime) -> int:
    """Every device inactive with USER_DELETED, every access token void."""
    Device.objects.filter(user=user, is_active=True).update(deactivated_at=now)
    return Device.objects.filter(user=user).update(
        is_active=False,
        inactive_reason=InactiveReason.USER_DELETED,
        access_token_digest=None,
        access_token_expires_at=None,
    )


def refresh_access_token(*, device: Device, now: dt.datetime | None = None) -> str:
    """Replaces the device's token; the old one is void at once. Conditional on the old digest,
    so of two refreshes with one token only one succeeds."""
    now = now or timezone.now()
    old_digest = device.access_token_digest
    token = _new_access_token(device, now)
    updated = Device.objects.filter(pk=device.pk, access_token_digest=old_digest).update(
        access_token_digest=device.access_token_digest,
        access_token_expires_at=device.access_token_expires_at,
        last_seen_at=now,
    )
    if updated != 1:
        raise ApiError(ErrorCode.INVALID_ACCESS_TOKEN, "This access token is no longer valid.")
    return token


def reset_device(*, device: Device, now: dt.datetime | None = None) -> None:
    """The SDK logs out: this device becomes inactive with RESET and its token void; the user
    and the user's other devices are untouched. Takes the user lock like redemption does, so
    a reset and a redemption on another device cannot interleave."""
    now = now or timezone.now()
    with transaction.atomic():
        LinkedUser.objects.select_for_update().filter(pk=device.user_id).first()
        current = Device.objects.filter(
            pk=device.pk, access_token_digest=device.access_token_digest
        ).first()
        if current is None:
            raise ApiError(ErrorCode.INVALID_ACCESS_TOKEN, "This access token is no longer valid.")
        current.deactivated_at = now if current.is_active else current.deactivated_at
        current.is_active, current.inactive_reason = False, InactiveReason.RESET
        current.access_token_digest = current.access_token_expires_at = None
        current.last_seen_at = now
        current.save(
            update_fields=[
                "is_active",
                "inactive_reason",
                "deactivated_at",
                "access_token_digest",
                "access_token_expires_at",
                "last_seen_at",
            ]
        )


def record_device_seen(*, device: Device, now: dt.datetime | None = None) -> None:
    """last_seen_at is kept to the minute: at most one write a minute per device."""
    now = now or timezone.now()
    if now - device.last_seen_at < dt.timedelta(minutes=1):
        return
    Device.objects.filter(pk=device.pk).update(last_seen_at=now)
    device.last_seen_at = now
