"""Who may see which console page: every app page resolves its app through the signed-in
person's membership, so another app's id is a 404 and a role too low a 403, whatever the URL
or method. Console people sign in with a password and a second factor, always."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode

from accounts.audit import Actor
from console.models import Membership, Role

View = Callable[..., HttpResponse]


def is_verified(request: HttpRequest) -> bool:
    """Signed in with the password and confirmed by the person's authenticator (or a recovery
    code) in this session (`OTPMiddleware` sets `is_verified`). A staff session never is: staff
    accounts are for the admin, and a staff member invited to an app gets a console account of
    its own."""
    user = request.user
    return bool(
        user.is_authenticated and user.is_active and not user.is_staff and user.is_verified()
    )


def _to_sign_in(request: HttpRequest) -> HttpResponse:
    """Not signed in: the sign-in page. Signed in without the second factor: the page that
    asks for it (or enrols the authenticator at the first sign-in). Either comes back here."""
    user = request.user
    target = (
        "console:second_factor"
        if user.is_authenticated and not user.is_staff
        else "console:sign_in"
    )
    query = urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})
    return HttpResponseRedirect(f"{reverse(target)}?{query}")


def signed_in(view: View) -> View:
    """Pages of the person rather than of an app (the app list, the account)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_verified(request):
            return _to_sign_in(request)
        return view(request, *args, **kwargs)

    return wrapper


def member_of_app(needed: Role = Role.VIEWER) -> Callable[[View], View]:
    """Pages of one app (`<app_id>` in the URL): the view is called with the person's
    `membership` (its `app` loaded) in place of the app id. Checked on every method."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, app_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
            if not is_verified(request):
                return _to_sign_in(request)
            ids = [app_id, *(value for value in kwargs.values() if isinstance(value, str))]
            membership = (
                None
                if any("\x00" in value for value in ids)  # PostgreSQL refuses NUL in text
                else Membership.objects.select_related("app")
                .filter(user=request.user, app__app_id=app_id)
                .first()
            )
            if membership is None:
                return render(request, "console/not_found.html", status=404)
            if not membership.allows(needed):
                context = {"membership": membership, "needed": Role(needed)}
                return render(request, "console/forbidden.html", context, status=403)
            request.membership = membership
            return view(request, *args, membership=membership, **kwargs)

        wrapper.needed_role = Role(needed)
        return wrapper

    return decorate


def actor(request: HttpRequest) -> Actor:
    """The audit actor of a console request: the person, by e-mail."""
    return Actor.console(request.user.email)
