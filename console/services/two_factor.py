"""The console's second factor: a TOTP authenticator app (RFC 6238, computed by django-otp's
`django_otp.oath.TOTP`) and ten single-use recovery codes.

The authenticator's shared key is stored sealed with Fernet (the `cryptography` package)
under a key derived from SECRET_KEY (and each of SECRET_KEY_FALLBACKS, so rotating
SECRET_KEY keeps authenticators working while the old key stays a fallback). Recovery codes
are kept as keyed digests only and are used once by one conditional UPDATE.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any
from urllib.parse import quote, urlencode

import segno
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_otp.oath import TOTP

from accounts.audit import Actor
from accounts.crypto import keyed_digest
from accounts.models import AuditAction
from console.models import Authenticator, RecoveryCode
from console.services import people
from console.services.events import person_event

KEY_BYTES = 20  # 160 bits, as RFC 4226 recommends and authenticator apps expect
STEP = 30
DIGITS = 6
TOLERANCE = 1  # one time step of clock drift either way
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
_RECOVERY_PURPOSE = "console.recovery_code"
_SEAL_PURPOSE = "portal.console.totp_key"


def _fernet() -> MultiFernet:
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return MultiFernet(
        [
            Fernet(
                base64.urlsafe_b64encode(
                    salted_hmac(_SEAL_PURPOSE, b"", key, algorithm="sha256").digest()
                )
            )
            for key in keys
        ]
    )


def _seal(key: bytes) -> str:
    return _fernet().encrypt(key).decode()


def shared_key(device: Authenticator) -> bytes:
    """The authenticator's key, unsealed. Raises InvalidToken if no configured SECRET_KEY
    sealed it."""
    return _fernet().decrypt(device.sealed_key.encode())


def typed_secret(device: Authenticator) -> str:
    """The key as the person types it into an app: base32 in groups of four."""
    secret = base64.b32encode(shared_key(device)).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_svg(device: Authenticator, account: str) -> str:
    """The `otpauth://` URL of the key as an inline SVG QR code, drawn here by segno."""
    issuer = settings.CONSOLE_TOTP_ISSUER
    query = urlencode(
        {
            "secret": base64.b32encode(shared_key(device)).decode().rstrip("="),
            "issuer": issuer,
            "digits": DIGITS,
            "period": STEP,
        }
    )
    url = f"otpauth://totp/{quote(issuer)}:{quote(account)}?{query}"
    return segno.make(url, error="m").svg_inline(scale=5, title="QR code of the authenticator key")


def confirmed_authenticator(user: Any) -> Authenticator | None:
    return Authenticator.objects.filter(user=user, confirmed=True).first()


def pending_authenticator(*, user: Any, device_id: int | None) -> Authenticator:
    """The unconfirmed authenticator this session is setting up (`device_id`), or a new one.
    Starting again elsewhere voids the earlier one: a key shown to one session is never the
    key another session confirms."""
    if device_id is not None:
        device = Authenticator.objects.filter(pk=device_id, user=user, confirmed=False).first()
        if device is not None:
            return device
    with transaction.atomic():
        Authenticator.objects.filter(user=user, confirmed=False).delete()
        return Authenticator.objects.create(
            user=user,
            name="Authenticator app",
            confirmed=False,
            sealed_key=_seal(secrets.token_bytes(KEY_BYTES)),
        )


def _accepts(device: Authenticator, code: str) -> bool:
    """Whether `code` is the device's code now (± one step) and newer than the last one it
    accepted; the caller holds the device's row lock and saves it."""
    code = "".join(code.split())
    if not (code.isascii() and code.isdigit() and len(code) == DIGITS):
        return False  # isdigit() alone lets other scripts' digits through, some int() refuses
    try:
        key = shared_key(device)
    except InvalidToken:
        return False
    totp = TOTP(key, STEP, 0, DIGITS, 0)
    if not totp.verify(int(code), TOLERANCE, device.last_t + 1):
        return False
    device.last_t = totp.t()
    return True


def verify_code(*, user: Any, code: str) -> Authenticator | None:
    """The person's confirmed authenticator if `code` is its current code. The device row is
    locked while checked, so one code is accepted once even by two requests at the same time."""
    with transaction.atomic():
        device = Authenticator.objects.select_for_update().filter(user=user, confirmed=True).first()
        if device is None or not _accepts(device, code):
            return None
        device.save(update_fields=["last_t"])
    return device


def confirm_enrolment(*, device: Authenticator, code: str, email: str) -> list[str] | None:
    """Confirms a new authenticator with its first code, retires the person's earlier one (if
    this replaces it: "reset 2FA" keeps the old one working until the new one is confirmed, so
    an account never stands without a second factor) and makes ten new recovery codes,
    returned here for their one showing. None when the code is not the app's current one."""
    with transaction.atomic():
        locked = (
            Authenticator.objects.select_for_update().filter(pk=device.pk, confirmed=False).first()
        )
        if locked is None or not _accepts(locked, code):
            return None
        locked.confirmed = True
        locked.save(update_fields=["confirmed", "last_t"])
        replaced, _ = (
            Authenticator.objects.filter(user_id=locked.user_id, confirmed=True)
            .exclude(pk=locked.pk)
            .delete()
        )
        Authenticator.objects.filter(user_id=locked.user_id, confirmed=False).delete()
        codes = _replace_recovery_codes(locked.user_id)
        action = AuditAction.CONSOLE_2FA_RESET if replaced else AuditAction.CONSOLE_2FA_ENROLLED
        person_event(action, email=email)
    device.confirmed = True
    device.last_t = locked.last_t
    return codes


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"  # 12 of 31 symbols: 59 bits


def _recovery_digest(code: str, secret: str | None = None) -> str:
    normalised = "".join(code.lower().split()).replace("-", "")
    return keyed_digest(normalised, purpose=_RECOVERY_PURPOSE, secret=secret)


def _recovery_digests(code: str) -> list[str]:
    """The digests `code` may be stored under: with SECRET_KEY and each former key still in
    SECRET_KEY_FALLBACKS, so a key rotation does not void everyone's recovery codes."""
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return [_recovery_digest(code, key) for key in keys]


def _replace_recovery_codes(user_id: int) -> list[str]:
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    RecoveryCode.objects.filter(user_id=user_id).delete()
    RecoveryCode.objects.bulk_create(
        RecoveryCode(user_id=user_id, digest=_recovery_digest(code)) for code in codes
    )
    return codes


def regenerate_recovery_codes(*, user: Any) -> list[str]:
    """Ten new codes for their one showing; the earlier ones stop working."""
    with transaction.atomic():
        codes = _replace_recovery_codes(user.pk)
        person_event(AuditAction.CONSOLE_RECOVERY_RENEWED, email=user.email)
    return codes


def use_recovery_code(*, user: Any, code: str) -> bool:
    """Spends one unused recovery code of the person: one conditional UPDATE, so two requests
    racing with the same code cannot both succeed. Audited when used."""
    if not code.strip():
        return False
    with transaction.atomic():
        used = RecoveryCode.objects.filter(
            user=user, digest__in=_recovery_digests(code), used_at__isnull=True
        ).update(used_at=timezone.now())
        if used:
            left = RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()
            person_event(AuditAction.CONSOLE_RECOVERY_USED, email=user.email, codes_left=left)
    return bool(used)


def recovery_codes_left(user: Any) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


def remove_second_factor(*, user: Any, actor: Actor) -> dict[str, int]:
    """Staff's help for a person who lost both the phone and the recovery codes: forgets the
    authenticator and the recovery codes (perhaps lost with the phone) and ends every session
    of the person (one left open on the lost device would lead straight to enrolling a new
    authenticator). The next sign-in, with the password, enrols a new one."""
    with transaction.atomic():
        removed, _ = Authenticator.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        ended = people.end_sessions(user=user, audit=False)
        person_event(
            AuditAction.CONSOLE_2FA_RESET,
            email=user.email,
            actor=actor,
            devices_removed=removed,
            sessions_ended=ended,
        )
    return {"devices_removed": removed, "sessions_ended": ended}
