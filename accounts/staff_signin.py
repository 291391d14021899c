"""Staff sign-in to the admin: the lockout (django-axes) and the audit events of sign-ins,
sign-outs and failed sign-ins. The client address is the rate limits' (`portal.throttling`).

The lockout counts failures per account and per client address in the database (axes'
database handler), so the admin never needs Redis. The customer and SDK APIs never call
Django's `authenticate`, so axes never sees them; `AXES_ONLY_ADMIN_SITE` keeps its refusals
to the admin even if another sign-in page appears.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from accounts import audit
from accounts.audit import Actor
from accounts.models import AuditAction
from portal.throttling import client_address

STAFF_TARGET = "staff"
"""The audit target type of a staff account; its target id is the username."""


def existing_staff_username(username: object) -> str | None:
    """`username` when it names an active staff account, else None."""
    if not isinstance(username, str) or not username:
        return None
    users = get_user_model().objects.filter(is_staff=True, is_active=True)
    return (
        username if users.filter(**{get_user_model().USERNAME_FIELD: username}).exists() else None
    )


def attempted_staff_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The name under which axes counts an attempt: the username itself for a staff account;
    for anything else a keyed digest of what was typed, so a password typed into the
    username field is never stored, and unknown names are counted and locked exactly like
    real ones (a different answer would tell which names exist)."""
    typed = (credentials or {}).get("username")
    if typed is None:
        typed = request.POST.get("username", "")
    typed = str(typed)
    cache = request.__dict__.setdefault("_staff_usernames", {})
    if typed not in cache:
        if existing_staff_username(typed):
            cache[typed] = typed
        else:
            digest = hmac.new(settings.SECRET_KEY.encode(), typed.encode(), hashlib.sha256)
            cache[typed] = f"unknown:{digest.hexdigest()[:24]}"
    return cache[typed]


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """The page a locked-out sign-in gets (429): what happened, for how long, what to do."""
    from django.contrib import admin

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {
        **admin.site.each_context(request),
        "title": "Sign-in locked",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": minutes,
        "login_url": reverse("admin:login"),
    }
    response = render(request, "admin/locked_out.html", context, status=429)
    # At most this long: the lock ends that many minutes after the last failure.
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


def _is_admin_request(request: HttpRequest | None) -> bool:
    return request is not None and request.path.startswith(reverse("admin:index"))


def _staff_event(action: AuditAction, username: str, **details: Any) -> None:
    audit.record(
        audit.event(
            actor=Actor.staff(username),
            action=action,
            target_type=STAFF_TARGET,
            target_id=username[:64],
            app_id=None,
            details=details,
        )
    )


@receiver(user_logged_in, dispatch_uid="staff_signed_in")
def record_sign_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if not (_is_admin_request(request) and user.is_staff):
        return
    device = getattr(user, "otp_device", None)
    _staff_event(
        AuditAction.STAFF_SIGNED_IN,
        user.get_username(),
        client_address=client_address(request),
        second_factor="totp" if device is not None else "none",
    )


@receiver(user_logged_out, dispatch_uid="staff_signed_out")
def record_sign_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if not (_is_admin_request(request) and user is not None and user.is_staff):
        return
    _staff_event(
        AuditAction.STAFF_SIGNED_OUT,
        user.get_username(),
        client_address=client_address(request),
    )


@receiver(user_login_failed, dispatch_uid="staff_sign_in_failed")
def record_failed_sign_in(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """Names the account only when it is a staff account: anything else typed there (a
    mistyped name, a password in the wrong field) is not kept. Never the password."""
    if not _is_admin_request(request) or getattr(request, "axes_locked_out", False):
        # While locked out, further tries are refused unchecked: recording each would let
        # anyone fill the audit trail.
        return
    _staff_event(
        AuditAction.STAFF_SIGN_IN_FAILED,
        existing_staff_username(credentials.get("username")) or "",
        client_address=client_address(request),
    )
