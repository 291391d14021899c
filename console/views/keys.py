"""API keys of the app: the list and its history; create, rotate (the new key shown once, in
the answer to the POST that made it) and revoke."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from accounts import services
from accounts.admin_forms import issue_form_nonce, take_form_nonce
from accounts.models import ApiKey
from accounts.selectors import api_key_status, api_keys_with_rotation
from console.access import actor, member_of_app
from console.models import Membership, Role
from console.page_forms import NewKeyForm, RotateForm
from portal.errors import DomainError

HISTORY_SHOWN = 50


def _live(now: dt.datetime) -> Q:
    return Q(revoked_at__isnull=True, expires_at__gt=now)


def _rows(keys: list[ApiKey], now: dt.datetime) -> list[tuple[ApiKey, str]]:
    return [(key, api_key_status(key, rotated=key.rotated, now=now)) for key in keys]


@member_of_app()
def key_list(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    """Live keys (at most the cap plus those in grace), then the newest of the history."""
    now = timezone.now()
    keys = api_keys_with_rotation(ApiKey.objects.filter(app=membership.app))
    live = list(keys.filter(_live(now)).order_by("-created_at"))
    history = list(keys.exclude(_live(now)).order_by("-created_at")[:HISTORY_SHOWN])
    context = {
        "membership": membership,
        "live": _rows(live, now),
        "history": _rows(history, now),
        "history_limit": HISTORY_SHOWN,
        "at_cap": len(live) >= settings.MAX_ACTIVE_API_KEYS_PER_APP,
        "cap": settings.MAX_ACTIVE_API_KEYS_PER_APP,
        "can_change": membership.allows(Role.DEVELOPER),
    }
    return render(request, "console/keys.html", context)


def _shown_once(
    request: HttpRequest, membership: Membership, new: services.NewApiKey, title: str
) -> HttpResponse:
    return render(
        request,
        "console/key_shown_once.html",
        {"membership": membership, "key": new.api_key, "full_key": new.full_key, "title": title},
    )


@never_cache
@member_of_app(Role.DEVELOPER)
def key_create(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    """A one-time form nonce makes a resent form (reload, back button) create nothing."""
    app = membership.app
    active = ApiKey.objects.filter(_live(timezone.now()), app=app).count()
    form = NewKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not take_form_nonce(request, request.POST.get("form_nonce", "")):
            messages.error(
                request,
                "This form was already sent: the key it created was shown once and cannot be "
                "shown again. Revoke it if it was not copied.",
            )
            return redirect("console:keys", app_id=app.app_id)
        data = form.cleaned_data
        try:
            new = services.create_api_key(
                app=app,
                name=data["name"],
                scopes=data["scopes"],
                expires_in_days=data["expires_in_days"],
                actor=actor(request),
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return _shown_once(request, membership, new, "Your new API key")
    context = {
        "membership": membership,
        "form": form,
        "form_nonce": issue_form_nonce(request),
        "at_cap": active >= settings.MAX_ACTIVE_API_KEYS_PER_APP,
        "active": active,
        "cap": settings.MAX_ACTIVE_API_KEYS_PER_APP,
    }
    return render(request, "console/key_create.html", context)


def _key_of_app(membership: Membership, key_id: str) -> ApiKey | None:
    return (
        api_keys_with_rotation(ApiKey.objects.filter(app=membership.app, key_id=key_id))
        .select_related(None)
        .first()
    )


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "console/not_found.html", status=404)


@never_cache
@member_of_app(Role.DEVELOPER)
def key_rotate(request: HttpRequest, key_id: str, *, membership: Membership) -> HttpResponse:
    key = _key_of_app(membership, key_id)
    if key is None:
        return _not_found(request)
    key.app = membership.app
    form = RotateForm(request.POST or None)
    refusal = None
    try:
        services.check_rotatable(key)
    except DomainError as exc:
        refusal = exc.message
    if request.method == "POST" and refusal is None and form.is_valid():
        if not take_form_nonce(request, request.POST.get("form_nonce", "")):
            messages.error(
                request,
                "This form was already sent: the key it created was shown once and cannot be "
                "shown again. Revoke it if it was not copied.",
            )
            return redirect("console:keys", app_id=membership.app.app_id)
        try:
            rotation = services.rotate_api_key(
                api_key=key,
                grace=dt.timedelta(hours=form.cleaned_data["grace_hours"]),
                actor=actor(request),
            )
        except DomainError as exc:
            refusal = exc.message
        else:
            messages.success(
                request,
                f"Key {key.key_id} rotated to {rotation.new.api_key.key_id}; the old key works "
                f"until {rotation.old_key.expires_at:%Y-%m-%d %H:%M} UTC.",
            )
            return _shown_once(request, membership, rotation.new, "The rotated key's successor")
    context = {
        "membership": membership,
        "key": key,
        "status": api_key_status(key, rotated=key.rotated),
        "form": form,
        "form_nonce": issue_form_nonce(request),
        "refusal": refusal,
    }
    return render(request, "console/key_rotate.html", context)


@member_of_app(Role.DEVELOPER)
def key_revoke(request: HttpRequest, key_id: str, *, membership: Membership) -> HttpResponse:
    key = _key_of_app(membership, key_id)
    if key is None:
        return _not_found(request)
    refusal = None
    try:
        services.check_revocable(key)
    except DomainError as exc:
        refusal = exc.message
    if request.method == "POST" and refusal is None:
        services.revoke_api_key(api_key=key, actor=actor(request))
        messages.success(
            request, f"Key {key.key_id} is revoked: every request with it now answers 401."
        )
        return redirect("console:keys", app_id=membership.app.app_id)
    context = {
        "membership": membership,
        "key": key,
        "status": api_key_status(key, rotated=key.rotated),
        "refusal": refusal,
    }
    return render(request, "console/key_revoke.html", context)
