"""Every write on devices: redemption under the activation policy, access tokens, reset, and
the support actions (deactivate, make active)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Exists,
    FilteredRelation,
    Model,
    OuterRef,
    Q,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import audit, crypto, lifecycle
from accounts.audit import Actor
from accounts.lifecycle import EventType
from accounts.models import (
    App,
    AuditAction,
    AuditEvent,
    AuthCode,
    AuthCodeStatus,
    LinkedUser,
    UserStatus,
)
from devices.models import Device, FormFactor, InactiveReason
from devices.policy import Decision, decide
from portal.db import rows
from portal.errors import DomainError, ErrorCode

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


@dataclass(frozen=True)
class AccessToken:
    token: str
    """Shown once; only its digest is stored on the device."""
    expires_at: dt.datetime


def _access_token(now: dt.datetime) -> tuple[AccessToken, str]:
    """A new token and its digest."""
    token = crypto.new_secret()
    expires_at = now.replace(microsecond=0) + dt.timedelta(
        seconds=settings.ACCESS_TOKEN_TTL_SECONDS
    )
    return AccessToken(token=token, expires_at=expires_at), crypto.digest(token)


def _new_access_token(device: Device, now: dt.datetime) -> str:
    """Gives `device`, about to be saved by the caller, a new token; returns the token."""
    new, device.access_token_digest = _access_token(now)
    device.access_token_expires_at = new.expires_at
    return new.token


# The user lock, written once as text (the ORM compiled this UPDATE anew on every request,
# costing more CPU than the statement takes to run).
_LOCK_USER = """
    UPDATE accounts_linkeduser
    SET status = CASE WHEN status = %(pending)s THEN %(active)s ELSE status END
    WHERE id = (SELECT user_id FROM accounts_authcode WHERE code_digest = %(digest)s)
"""
_USER_STATUSES = {"pending": UserStatus.PENDING, "active": UserStatus.ACTIVE}


@dataclass(frozen=True)
class _Found:
    """What redemption reads, under the user lock, about a code: the code as it was before
    this redemption, its user (app loaded), the user's active device and the device already
    under the incoming install id (its user loaded), and whether this redemption used it."""

    code: AuthCode
    key_id: str | None
    user: LinkedUser
    had_devices: bool
    """The user had a device before this code's redemption (for a retry, before the first
    one: the retry repeats the first answer): the user is "restored"."""
    active: Device | None
    own: Device | None
    consumed: bool


def redeem_auth_code(
    *, code: str, app_id: str, device: DeviceInfo, now: dt.datetime | None = None
) -> Redemption:
    """Uses a code once and activates the device under the per-user policy, atomically.

    First the code's user row is locked; then one read fetches the code with its user, app,
    issuing key, the user's active device and the device already registered under this
    install id, and uses the code; then only writes follow. The user lock makes two devices
    of one user redeeming at once take turns; the conditional UPDATE makes one code usable
    once even by requests that raced past the read. Any refusal rolls everything back.
    """
    digest = crypto.digest(code)
    with transaction.atomic():
        # The lock comes first, in its own statement, so that the read below sees the user's
        # devices as the previous holder of the lock left them. Taking it with an UPDATE also
        # marks a pending user active; every refusal below rolls that back.
        with rows.cursor() as cursor:
            cursor.execute(_LOCK_USER, {"digest": digest, **_USER_STATUSES})
        # The clock is read once the lock is held, so times follow the order of the turns.
        now = now or timezone.now()
        read = _read_and_use if connection.vendor == "postgresql" else _read_then_use
        found = read(digest=digest, install_id=device.install_id, now=now)
        if found is None or found.user.app.app_id != app_id:
            raise DomainError(ErrorCode.INVALID_AUTH_CODE)
        user = found.user
        if not user.app.is_active:
            raise DomainError(ErrorCode.APP_DISABLED)
        if not user.is_usable:
            raise DomainError(ErrorCode.USER_DISABLED)
        if not found.consumed:  # under the user lock, the read is current: no race to re-read
            return _retry(found=found, info=device, now=now)

        user_event = audit.user_event(
            user,
            AuditAction.USER_RESTORED if found.had_devices else AuditAction.USER_CREATED,
            Actor.device(device.install_id),
            now,
            issued_by_key=found.key_id,
        )
        # Announced as the audit log tells it: the user's first device makes the user
        # (issuance alone only reserves it), a later one brings it back.
        announced = [
            _user_announcement(
                user,
                EventType.USER_RESTORED if found.had_devices else EventType.USER_CREATED,
                now,
            )
        ]
        activated, token = _activate(
            user=user,
            current=found.active,
            own=found.own,
            info=device,
            now=now,
            user_event=user_event,
            announced=announced,
        )
    return Redemption(
        user=user,
        device=activated,
        access_token=token,
        restored=found.had_devices,
        retried=False,
    )


# PostgreSQL: the code's use and the read in one statement. The UPDATE in WITH runs once, and
# the SELECT sees the code as it was before it (so a retry is told from a first use); any
# refusal after it rolls it back. Scalar subqueries instead of joins keep planning, which
# costs far more than executing here, to single-table lookups.
_READ_AND_USE = """
    WITH used AS (
        UPDATE accounts_authcode
        SET status = %(redeemed)s, redeemed_at = %(now)s, redeemed_install_id = %(install_id)s
        WHERE code_digest = %(digest)s AND status = %(issued)s AND expires_at > %(now)s
        RETURNING id
    )
    SELECT
        row_to_json(c),
        (SELECT k.key_id FROM accounts_apikey k WHERE k.id = c.api_key_id),
        row_to_json(u),
        a.app_id,
        a.is_active,
        a.sdk_config,
        a.webhook_events,
        EXISTS (
            SELECT 1 FROM devices_device d
            WHERE d.user_id = c.user_id AND d.created_at < COALESCE(c.redeemed_at, %(now)s)
        ),
        (SELECT row_to_json(d) FROM devices_device d WHERE d.user_id = c.user_id AND d.is_active),
        (
            SELECT json_build_object('device', row_to_json(d), 'user', row_to_json(du))
            FROM devices_device d JOIN accounts_linkeduser du ON du.id = d.user_id
            WHERE d.app_id = c.app_id AND d.install_id = %(install_id)s
        ),
        EXISTS (SELECT 1 FROM used)
    FROM accounts_authcode c
    JOIN accounts_linkeduser u ON u.id = c.user_id
    JOIN accounts_app a ON a.id = u.app_id
    WHERE c.code_digest = %(digest)s
"""


def _read_and_use(*, digest: str, install_id: str, now: dt.datetime) -> _Found | None:
    params = {
        "digest": digest,
        "install_id": install_id,
        "now": now,
        "issued": AuthCodeStatus.ISSUED,
        "redeemed": AuthCodeStatus.REDEEMED,
    }
    with rows.cursor() as cursor:
        cursor.execute(_READ_AND_USE, params)
        row = cursor.fetchone()
    if row is None:
        return None
    code, key_id, user, app_id, is_active, sdk_config, events, had_devices, active, own, used = row
    user = rows.from_json(LinkedUser, user)
    if isinstance(sdk_config, str):  # Django leaves jsonb to the field to parse
        sdk_config = json.loads(sdk_config)
    user.app = App.from_db(
        connection.alias,
        ["id", "app_id", "is_active", "sdk_config", "webhook_events"],
        [user.app_id, app_id, is_active, sdk_config, events],
    )
    active = rows.from_json(Device, active) if active else None
    if active is not None:
        active.user = user
    if own is not None:
        own_user = rows.from_json(LinkedUser, own["user"])
        own = rows.from_json(Device, own["device"])
        own.user = user if own.user_id == user.pk else own_user
    return _Found(
        code=rows.from_json(AuthCode, code),
        key_id=key_id,
        user=user,
        had_devices=had_devices,
        active=active,
        own=own,
        consumed=used,
    )


def _read_then_use(*, digest: str, install_id: str, now: dt.datetime) -> _Found | None:
    """The same as `_read_and_use` in two statements, for SQLite (no UPDATE in WITH)."""
    found = (
        AuthCode.objects.annotate(
            active_device=FilteredRelation(
                "user__devices", condition=Q(user__devices__is_active=True)
            ),
            own_device=FilteredRelation(
                "app__devices", condition=Q(app__devices__install_id=install_id)
            ),
            user_had_devices=Exists(
                Device.objects.filter(
                    user=OuterRef("user_id"),
                    created_at__lt=Coalesce(OuterRef("redeemed_at"), Value(now)),
                )
            ),
        )
        .select_related("user__app", "api_key", "active_device", "own_device__user")
        .filter(code_digest=digest)[:1]  # unique: no ORDER BY, which .first() would add
    )
    code = next(iter(found), None)
    if code is None:
        return None
    used = (
        code.status == AuthCodeStatus.ISSUED
        and code.expires_at > now
        and AuthCode.objects.filter(
            pk=code.pk, status=AuthCodeStatus.ISSUED, expires_at__gt=now
        ).update(status=AuthCodeStatus.REDEEMED, redeemed_at=now, redeemed_install_id=install_id)
        == 1
    )
    active = getattr(code, "active_device", None)
    if active is not None:
        active.user = code.user
    return _Found(
        code=code,
        key_id=code.api_key.key_id if code.api_key else None,
        user=code.user,
        had_devices=code.user_had_devices,
        active=active,
        own=getattr(code, "own_device", None),
        consumed=used,
    )


def _device_event(
    device: Device, action: AuditAction, actor: Actor, now: dt.datetime, **details: object
) -> AuditEvent:
    return audit.event(
        actor=actor,
        action=action,
        target_type="device",
        target_id=device.install_id,
        app_id=device.app_id,
        user_ref=device.user.user_id,
        details=details,
        now=now,
    )


def _user_announcement(user: LinkedUser, type: EventType, now: dt.datetime) -> Model | None:
    """The outbox row for `type` about `user` (app loaded), None when nobody listens."""
    if not lifecycle.subscribed(user.app, type):
        return None
    data = {"user_id": user.user_id, "external_id": user.external_id}
    return lifecycle.outbox_row(app=user.app, type=type, data=data, now=now)


def _device_announcement(
    device: Device, type: EventType, now: dt.datetime, reason: str | None = None
) -> Model | None:
    """The outbox row for `type` about `device` (user and app loaded), None when nobody
    listens (checked first: on the redemption path, that is all it costs)."""
    user = device.user
    if not lifecycle.subscribed(user.app, type):
        return None
    data = {
        "user_id": user.user_id,
        "external_id": user.external_id,
        "install_id": device.install_id,
        "platform": device.platform,
        "form_factor": device.form_factor,
    }
    if reason is not None:
        data["reason"] = reason
    return lifecycle.outbox_row(app=user.app, type=type, data=data, now=now)


def _retry(*, found: _Found, info: DeviceInfo, now: dt.datetime) -> Redemption:
    """A code that was not used now: the SDK's retry of its own redemption within the code's
    lifetime gets a fresh token for the same device; anything else is refused."""
    code, own, user = found.code, found.own, found.user
    if code.status != AuthCodeStatus.REDEEMED:
        raise DomainError(ErrorCode.AUTH_CODE_EXPIRED)
    retry = (
        code.redeemed_install_id == info.install_id
        and code.expires_at > now
        and own is not None
        and own.user_id == user.pk
        and own.access_token_digest is not None  # a reset since voided the install for good
    )
    if not retry:
        raise DomainError(ErrorCode.AUTH_CODE_ALREADY_USED)
    token = _new_access_token(own, now)
    own.last_seen_at = now
    own.save(update_fields=["access_token_digest", "access_token_expires_at", "last_seen_at"])
    return Redemption(
        user=user, device=own, access_token=token, restored=found.had_devices, retried=True
    )


def _activate(
    *,
    user: LinkedUser,
    current: Device | None,
    own: Device | None,
    info: DeviceInfo,
    now: dt.datetime,
    user_event: AuditEvent,
    announced: list[Model | None],
) -> tuple[Device, str]:
    """Applies the activation policy for the incoming device; the caller holds the user lock.
    `current` is the user's active device, `own` the device already under this install id;
    `user_event` is recorded with the devices' own events, and the `announced` outbox rows
    with theirs."""
    if own is not None and own.user_id != user.pk:
        if own.user.status == UserStatus.DELETED:
            # The install's previous user was deleted and awaits its purge: the install is free.
            own.delete()
            own = None
        else:
            raise DomainError(ErrorCode.INSTALL_ID_CONFLICT)
    if current is not None and current.install_id == info.install_id:
        current = None  # the incoming device is the active one already
    if current is not None:
        current.user = user
    device = own or Device(app_id=user.app_id, install_id=info.install_id, created_at=now)
    device.user = user
    for field in DEVICE_FIELDS:
        setattr(device, field, getattr(info, field))
    device.last_seen_at = now
    token = _new_access_token(device, now)
    decision = decide(
        current=FormFactor(current.form_factor) if current else None,
        incoming=FormFactor(info.form_factor),
    )
    _apply(
        decision,
        current=current,
        incoming=device,
        actor=Actor.device(info.install_id),
        now=now,
        recorded=[user_event],
        announced=announced,
    )
    return device, token


def _apply(
    decision: Decision,
    *,
    current: Device | None,
    incoming: Device,
    actor: Actor,
    now: dt.datetime,
    redeemed: bool = True,
    recorded: list[AuditEvent] | tuple[()] = (),
    announced: list[Model | None] | tuple[()] = (),
) -> None:
    """The one place a `Decision` is carried out, for a redemption and for support alike: the
    user's active device `current` (user loaded) steps down if the decision says so, the
    `incoming` device becomes active or inactive with the decision's reason, and both are
    written, with their audit events after the `recorded` ones, in one statement. The caller
    holds the user lock. `redeemed`: the incoming device brings new details and a new token
    (a redemption); otherwise only its place changes (support), and a token refresh racing it
    is kept. The devices' lifecycle events are announced, after the `announced` ones, for an
    app whose webhooks want them."""
    events = list(recorded)
    outbox = list(announced)
    changed = []
    if decision.deactivate_current:
        current.is_active, current.inactive_reason = False, decision.reason
        current.deactivated_at = now
        changed.append(current)
        events.append(
            _device_event(
                current,
                AuditAction.DEVICE_DEACTIVATED,
                actor,
                now,
                reason=decision.reason,
                replaced_by=incoming.install_id,
            )
        )
        outbox.append(
            _device_announcement(current, EventType.DEVICE_DEACTIVATED, now, decision.reason)
        )
    if decision.activate_incoming:
        if not incoming.is_active:
            incoming.activated_at = now
            events.append(_device_event(incoming, AuditAction.DEVICE_ACTIVATED, actor, now))
            outbox.append(_device_announcement(incoming, EventType.DEVICE_ACTIVATED, now))
        incoming.is_active, incoming.inactive_reason, incoming.deactivated_at = True, None, None
    else:
        if incoming.is_active or incoming.inactive_reason != decision.reason:
            incoming.deactivated_at = now
            events.append(
                _device_event(
                    incoming, AuditAction.DEVICE_DEACTIVATED, actor, now, reason=decision.reason
                )
            )
            outbox.append(
                _device_announcement(incoming, EventType.DEVICE_DEACTIVATED, now, decision.reason)
            )
        incoming.is_active, incoming.inactive_reason = False, decision.reason
    _save_devices(
        [*changed, incoming],
        incoming=incoming if redeemed else None,
        events=events,
        outbox=[row for row in outbox if row is not None],
    )


# What a redemption decides for every device it writes, and what only the incoming device
# brings. A device that merely loses its place keeps its own token and last_seen_at: a refresh
# it made after the redemption's read must not be undone.
_POLICY_FIELDS = ("is_active", "inactive_reason", "activated_at", "deactivated_at")
_INCOMING_FIELDS = (
    *DEVICE_FIELDS,
    "last_seen_at",
    "access_token_digest",
    "access_token_expires_at",
)


def _save_devices(
    devices: list[Device],
    *,
    incoming: Device | None,
    events: list[AuditEvent],
    outbox: list[Model],
) -> None:
    """Writes device states in one statement: an upsert on (app, install_id), applied in the
    order given (put a deactivation before the activation it makes room for: the
    one-active-device constraint is checked row by row). Only `incoming`, the redeeming
    device if any, has its details and token written. The upsert only ever updates a row
    of the same user: an install id that another user's redemption took concurrently comes
    back missing, which is INSTALL_ID_CONFLICT, and the caller's transaction rolls back.
    On PostgreSQL the `events` and the `outbox` rows are inserted by the same statement (a
    round trip less each)."""
    quote = connection.ops.quote_name
    table = quote(Device._meta.db_table)
    column = {field.name: quote(field.column) for field in Device._meta.concrete_fields}
    incoming_fields = _INCOMING_FIELDS if incoming is not None else ()
    updates = [f"{column[name]} = excluded.{column[name]}" for name in _POLICY_FIELDS] + [
        f"{column[name]} = CASE WHEN excluded.install_id = %s "
        f"THEN excluded.{column[name]} ELSE {table}.{column[name]} END"
        for name in incoming_fields
    ]
    insert, params = rows.insert_sql(Device, devices)
    sql = (
        f"{insert} ON CONFLICT (app_id, install_id) DO UPDATE SET {', '.join(updates)} "
        f"WHERE {table}.user_id = excluded.user_id RETURNING id, install_id"
    )
    params += [incoming.install_id for _ in incoming_fields]
    if connection.vendor == "postgresql":
        ctes, cte_params = [], []
        for name, written in (("logged", events), ("announced", outbox)):
            if written:
                insert_rows, insert_params = rows.insert_sql(type(written[0]), written)
                ctes.append(f"{name} AS ({insert_rows})")
                cte_params += insert_params
        if ctes:
            sql, params = f"WITH {', '.join(ctes)} {sql}", [*cte_params, *params]
    else:
        if events:
            audit.record(*events)
        lifecycle.record(*outbox)
    with rows.cursor() as cursor:
        cursor.execute(sql, params)
        ids = {install_id: pk for pk, install_id in cursor.fetchall()}
    if outbox and connection.vendor == "postgresql":
        lifecycle.written()
    for device in devices:
        if device.install_id not in ids:
            raise DomainError(ErrorCode.INSTALL_ID_CONFLICT)
        device.pk = ids[device.install_id]
        device._state.adding, device._state.db = False, connection.alias


def retire_devices_of_deleted_user(*, user: LinkedUser, now: dt.datetime) -> int:
    """Every device inactive with USER_DELETED, every access token void; the active one's
    deactivation announced (`user.app` must be loaded) when the app's webhooks want it."""
    if lifecycle.subscribed(user.app, EventType.DEVICE_DEACTIVATED):
        for active in Device.objects.filter(user=user, is_active=True):
            active.user = user
            lifecycle.record(
                _device_announcement(
                    active, EventType.DEVICE_DEACTIVATED, now, InactiveReason.USER_DELETED
                )
            )
    Device.objects.filter(user=user, is_active=True).update(deactivated_at=now)
    return Device.objects.filter(user=user).update(
        is_active=False,
        inactive_reason=InactiveReason.USER_DELETED,
        access_token_digest=None,
        access_token_expires_at=None,
    )


def refresh_access_token(*, device: Device, now: dt.datetime | None = None) -> AccessToken:
    """Replaces the device's token; the old one is void at once. Conditional on the old digest,
    so of two refreshes with one token only one succeeds."""
    now = now or timezone.now()
    new, digest = _access_token(now)
    updated = Device.objects.filter(
        pk=device.pk, access_token_digest=device.access_token_digest
    ).update(access_token_digest=digest, access_token_expires_at=new.expires_at, last_seen_at=now)
    if updated != 1:
        raise DomainError(ErrorCode.INVALID_ACCESS_TOKEN)
    return new


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
            raise DomainError(ErrorCode.INVALID_ACCESS_TOKEN)
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
        current.user = device.user
        audit.record(
            _device_event(
                current,
                AuditAction.DEVICE_DEACTIVATED,
                Actor.device(current.install_id),
                now,
                reason=InactiveReason.RESET,
            )
        )
        lifecycle.record(
            _device_announcement(current, EventType.DEVICE_DEACTIVATED, now, InactiveReason.RESET)
        )


def record_device_seen(*, device: Device, now: dt.datetime | None = None) -> dt.datetime:
    """last_seen_at is kept to the minute: at most one write a minute per device. Returns the
    device's last_seen_at as it is now."""
    now = now or timezone.now()
    if now - device.last_seen_at < dt.timedelta(minutes=1):
        return device.last_seen_at
    Device.objects.filter(pk=device.pk).update(last_seen_at=now)
    return now


def check_deactivatable(device: Device) -> None:
    """Support may deactivate the active device of a user not deleted (DomainError
    otherwise). `device.user` must be loaded."""
    if device.user.status == UserStatus.DELETED:
        raise DomainError(ErrorCode.INVALID_REQUEST, f"the user {device.user.user_id} is deleted")
    if not device.is_active:
        raise DomainError(ErrorCode.INVALID_REQUEST, f"{device.install_id} is not active")


def deactivate_device(
    *, device: Device, actor: Actor, reason: str = "", now: dt.datetime | None = None
) -> Device:
    """Support takes the active device out of service (DEACTIVATED_BY_SUPPORT). Its access
    token is kept: the SDK must still be able to read /sdk/status to learn why it stopped.
    Takes the user lock like redemption does; returns the device as it is now. `reason`,
    optional free text, is kept in the audit event (see `audit.note_details`)."""
    now = now or timezone.now()
    details = audit.note_details(reason)
    with transaction.atomic():
        user = (
            LinkedUser.objects.select_for_update(of=("self",))
            .select_related("app")
            .get(pk=device.user_id)
        )
        current = Device.objects.get(pk=device.pk)
        current.user = user
        check_deactivatable(current)
        current.is_active, current.inactive_reason = False, InactiveReason.DEACTIVATED_BY_SUPPORT
        current.deactivated_at = now
        current.save(update_fields=["is_active", "inactive_reason", "deactivated_at"])
        audit.record(
            _device_event(
                current,
                AuditAction.DEVICE_DEACTIVATED,
                actor,
                now,
                reason=InactiveReason.DEACTIVATED_BY_SUPPORT,
                **details,
            )
        )
        lifecycle.record(
            _device_announcement(
                current, EventType.DEVICE_DEACTIVATED, now, InactiveReason.DEACTIVATED_BY_SUPPORT
            )
        )
    return current


def check_activatable(device: Device, *, current: Device | None = None) -> Decision:
    """What making `device` its user's active device would do, `current` being the user's
    active device (looked up when not given): the activation policy, exactly as for a
    redemption. So support cannot put a tablet in the place of an active phone in one step;
    they deactivate the phone first, which is a decision of its own, recorded as such.
    DomainError when the device may not become active. `device.user` must be loaded."""
    if device.user.status == UserStatus.DELETED:
        raise DomainError(ErrorCode.INVALID_REQUEST, f"the user {device.user.user_id} is deleted")
    if device.is_active:
        raise DomainError(ErrorCode.INVALID_REQUEST, f"{device.install_id} is already active")
    if device.access_token_digest is None:
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            f"{device.install_id} has no access token any more (reset or user deleted): "
            "the app must sign in again with a new code",
        )
    if current is None:
        current = Device.objects.filter(user_id=device.user_id, is_active=True).first()
    decision = decide(
        current=FormFactor(current.form_factor) if current else None,
        incoming=FormFactor(device.form_factor),
    )
    if not decision.activate_incoming:
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            f"the phone {current.install_id} is active and phones come first: "
            "deactivate it first, then make this tablet active",
        )
    return decision


@dataclass(frozen=True)
class Activation:
    device: Device
    """The device made active."""
    replaced: Device | None
    """The device that lost its place (now inactive with the policy's reason), if any."""


def activate_device(*, device: Device, actor: Actor, now: dt.datetime | None = None) -> Activation:
    """Support makes `device` its user's active device, under the activation policy and the
    same user lock as redemption. The token, if still valid, starts working as the active
    device's at once."""
    now = now or timezone.now()
    with transaction.atomic():
        user = (
            LinkedUser.objects.select_for_update(of=("self",))
            .select_related("app")
            .get(pk=device.user_id)
        )
        target = Device.objects.get(pk=device.pk)
        target.user = user
        current = Device.objects.filter(user=user, is_active=True).first()
        decision = check_activatable(target, current=current)
        if current is not None:
            current.user = user
        _apply(decision, current=current, incoming=target, actor=actor, now=now, redeemed=False)
    return Activation(device=target, replaced=current if decision.deactivate_current else None)
