"""Two-factor sign-in for staff: a TOTP authenticator app (django-otp's `otp_totp`).

With `STAFF_2FA_REQUIRED`, a staff member who has confirmed an authenticator enters its code
on the sign-in form, beside the password; one who has none signs in with the password, is
sent to the enrolment page (QR code drawn here, as inline SVG, and the secret for typing in),
and reaches the admin once a first code from the app is confirmed. A wrong or missing code
is a failed sign-in like a wrong password: same message, same lockout count, same audit
event, so the form never tells that the password was right.
"""

from __future__ import annotations

import base64
from typing import Any

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME, SESSION_KEY
from django.contrib.auth.signals import user_login_failed
from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import audit
from accounts.audit import Actor
from accounts.models import AuditAction
from accounts.staff_signin import STAFF_TARGET
from portal.throttling import client_address

DEVICE_NAME = "Authenticator app"
# The session's own unconfirmed authenticator, while it sets one up.
_PENDING_DEVICE = "staff_2fa_pending_device"


def required() -> bool:
    return settings.STAFF_2FA_REQUIRED


def has_authenticator(user: Any) -> bool:
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).exists()


def is_verified(user: Any) -> bool:
    """Whether this session's sign-in was confirmed by the member's authenticator
    (`OTPMiddleware` sets `is_verified` on the request's user)."""
    return bool(getattr(user, "is_verified", lambda: False)())


def awaits_second_factor(request: HttpRequest) -> bool:
    """A staff member signed in with the password whose session the admin does not yet
    accept: 2FA is required and no authenticator confirmed this sign-in."""
    user = request.user
    return (
        required()
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and not is_verified(user)
    )


def verify_code(user: Any, code: str) -> TOTPDevice | None:
    """The member's authenticator if `code` is its current code. Locked while checked, so a
    code is accepted once (django-otp remembers the last time step used) and the device's
    back-off after failures holds under concurrent attempts."""
    code = "".join(code.split())
    if not code:
        return None
    with transaction.atomic():
        devices = TOTPDevice.objects.devices_for_user(user, confirmed=True).select_for_update()
        for device in devices.order_by("pk"):
            if device.verify_token(code):
                return device
    return None


class StaffAuthenticationForm(AdminAuthenticationForm):
    """The admin's sign-in form with the authenticator's code beside the password."""

    otp_token = forms.CharField(
        label="Authentication code",
        required=False,
        max_length=16,
        strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}
        ),
        help_text="The 6-digit code your authenticator app shows. Leave it empty at your "
        "first sign-in: you will set up the app next.",
    )

    def __init__(self, request: HttpRequest | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        if required():
            self.error_messages = {
                **self.error_messages,
                "invalid_login": "Please enter the correct %(username)s, password and "
                "authentication code for a staff account. Note that the fields may be "
                "case-sensitive.",
            }
        else:
            del self.fields["otp_token"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        user = self.user_cache
        if user is not None and required() and has_authenticator(user):
            device = verify_code(user, cleaned.get("otp_token", ""))
            if device is None:
                # A failed sign-in for axes' lockout count and the audit trail alike.
                user_login_failed.send(
                    sender=type(self),
                    credentials={"username": user.get_username()},
                    request=self.request,
                )
                raise self.get_invalid_login_error()
            user.otp_device = device  # django-otp marks the session verified at login
        return cleaned


class EnrolmentForm(forms.Form):
    token = forms.CharField(
        label="Code from the app",
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}
        ),
    )


def _pending_device(request: HttpRequest, user: Any) -> TOTPDevice:
    """This session's unconfirmed authenticator, kept across reloads of the page so the code
    scanned a minute ago still works. Another session that starts setting up gets a key of its
    own and voids this one: a key shown to one session (perhaps someone holding only the
    password) is never the key another session confirms."""
    pending = request.session.get(_PENDING_DEVICE)
    device = (
        TOTPDevice.objects.filter(pk=pending, user=user, confirmed=False).first()
        if pending
        else None
    )
    if device is None:
        with transaction.atomic():
            TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
        request.session[_PENDING_DEVICE] = device.pk
    return device


def _safe_next(request: HttpRequest, site: AdminSite) -> str:
    candidate = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("admin:index", current_app=site.name)


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def enrolment_view(site: AdminSite, request: HttpRequest) -> HttpResponse:
    """Sets up the authenticator of a staff member who signed in with the password and has
    none. Anyone else is sent where they belong: to the sign-in page, or into the admin."""
    next_url = _safe_next(request, site)
    login_url = reverse("admin:login", current_app=site.name)
    if not awaits_second_factor(request):
        target = next_url if request.user.is_authenticated else login_url
        return HttpResponseRedirect(target)
    user = request.user
    if has_authenticator(user):
        # Set up already: this sign-in is confirmed with a code, on the sign-in page.
        return HttpResponseRedirect(f"{login_url}?{urlencode({REDIRECT_FIELD_NAME: next_url})}")
    device = _pending_device(request, user)
    form = EnrolmentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if _confirm(request, device, form.cleaned_data["token"]):
            messages.success(request, "Two-factor sign-in is set up. Sign-ins now ask for a code.")
            return HttpResponseRedirect(next_url)
        form.add_error("token", "This is not the code the app shows now. Try the next one.")
    secret = base64.b32encode(device.bin_key).decode()
    context = {
        **site.each_context(request),
        "title": "Set up two-factor sign-in",
        "form": form,
        "qr_svg": mark_safe(  # noqa: S308 - segno's own SVG of our own otpauth URL
            segno.make(device.config_url, error="m").svg_inline(
                scale=5, title="QR code of the authenticator key"
            )
        ),
        "secret": _grouped(secret),
        "issuer": settings.OTP_TOTP_ISSUER,
        "account": user.get_username(),
        "next": next_url,
        "logout_url": reverse("admin:logout", current_app=site.name),
    }
    return TemplateResponse(request, "admin/staff_2fa_enrol.html", context)


def _confirm(request: HttpRequest, device: TOTPDevice, code: str) -> bool:
    """Confirms the device with its first code, drops any other pending one, ends the
    member's other sessions (none of them confirmed this key), records the enrolment and marks
    this session verified under a new session key."""
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().filter(pk=device.pk).first()
        if locked is None or not locked.verify_token("".join(code.split())):
            return False
        locked.confirmed = True
        locked.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user_id=locked.user_id, confirmed=False).delete()
        _end_sessions(request.user, keep=request.session.session_key)
        username = request.user.get_username()
        audit.record(
            audit.event(
                actor=Actor.staff(username),
                action=AuditAction.STAFF_2FA_ENROLLED,
                target_type=STAFF_TARGET,
                target_id=username[:64],
                app_id=None,
                details={"client_address": client_address(request)},
            )
        )
    request.session.pop(_PENDING_DEVICE, None)
    request.session.cycle_key()
    otp_login(request, locked)
    return True


def remove_authenticators(*, user: Any, actor: Actor) -> int:
    """Forgets the member's authenticators (a lost phone) and ends their sessions: a session
    left open on a lost device would otherwise lead straight to setting up a new authenticator.
    The next sign-in, with the password, does that. Returns how many were removed."""
    with transaction.atomic():
        removed, _ = TOTPDevice.objects.filter(user=user).delete()
        _end_sessions(user)
        username = user.get_username()
        audit.record(
            audit.event(
                actor=actor,
                action=AuditAction.STAFF_2FA_RESET,
                target_type=STAFF_TARGET,
                target_id=username[:64],
                app_id=None,
                details={"devices_removed": removed},
            )
        )
    return removed


def _end_sessions(user: Any, *, keep: str | None = None) -> None:
    """Deletes the member's sessions (but `keep`). Sessions are not indexed by user, but only
    staff have any (the APIs use none), so reading the live ones stays small."""
    user_id = str(user.pk)
    live = Session.objects.filter(expire_date__gt=timezone.now()).exclude(session_key=keep)
    ended = [s.session_key for s in live if s.get_decoded().get(SESSION_KEY) == user_id]
    Session.objects.filter(session_key__in=ended).delete()
