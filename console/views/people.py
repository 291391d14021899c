"""Signing in and out: e-mail and password, then the authenticator (enrolled at the first
sign-in) or a recovery code. A wrong password and a wrong code are both failures counted by
`console.services.lockout`.

The password is checked here with `check_password`, not through `authenticate()`: that would
send Django's `user_login_failed`, which django-axes counts for the staff admin's lockout, so
customers mistyping in the console would lock staff out of the admin from their address.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME, get_user_model, login, logout
from django.contrib.auth.hashers import make_password
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_POST
from django_otp import login as otp_login

from console.access import is_verified
from console.forms import CodeForm, EnrolmentForm, NewAuthenticatorForm, SignInForm
from console.services import lockout, people, two_factor
from portal.errors import DomainError
from portal.throttling import client_address

_PENDING_DEVICE = "console_pending_authenticator"
_BACKEND = "django.contrib.auth.backends.ModelBackend"


def safe_next(request: HttpRequest, default: str | None = None) -> str:
    """Where to go after this step: the `next` the page was given when it is on this site."""
    candidate = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default or reverse("console:home")


def with_next(route: str, next_url: str) -> str:
    return f"{reverse(route)}?{urlencode({REDIRECT_FIELD_NAME: next_url})}"


def locked_page(request: HttpRequest, error: DomainError) -> HttpResponse:
    response = render(request, "console/locked.html", {"message": error.message}, status=429)
    for name, value in error.headers.items():
        response[name] = value
    return response


def password_form_valid(
    request: HttpRequest, form: Form, password_field: str
) -> tuple[bool, HttpResponse | None]:
    """Validates a form that asks for the signed-in person's password, the wrong password
    counted like a failed sign-in: a session left open (or stolen) must not try passwords at
    leisure where the sign-in page locks after a few. (valid, None) or (False, the locked page)."""
    user = request.user
    try:
        attempt = lockout.begin(email=user.email, address=client_address(request) or "")
        valid = form.is_valid()
        if password_field in form.errors:
            lockout.record_failure(attempt=attempt, known_email=user.email)
        else:
            lockout.succeeded(attempt)
    except DomainError as error:
        return False, locked_page(request, error)
    return valid, None


def _person_with_password(email: str, password: str) -> Any:
    """The active console account `email` if `password` is its password, else None. Unknown
    e-mails cost one password hash too, so the time taken does not tell which accounts exist.
    Staff accounts sign in at /admin/ only."""
    user = get_user_model().objects.filter(username=email, is_active=True, is_staff=False).first()
    if user is None:
        make_password(password)
        return None
    return user if user.check_password(password) else None


def sign_in(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request)
    if is_verified(request):
        return HttpResponseRedirect(next_url)
    form = SignInForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"].strip().lower()
        address = client_address(request) or ""
        try:
            attempt = lockout.begin(email=email, address=address)
            user = _person_with_password(email, form.cleaned_data["password"])
            if user is None:
                known = get_user_model().objects.filter(username=email, is_staff=False).exists()
                lockout.record_failure(attempt=attempt, known_email=email if known else None)
            else:
                lockout.succeeded(attempt)
        except DomainError as error:
            return locked_page(request, error)
        if user is not None:
            login(request, user, backend=_BACKEND)
            people.record_session(user=user, session_key=request.session.session_key)
            return HttpResponseRedirect(with_next("console:second_factor", next_url))
        form.add_error(None, "The e-mail address or the password is not right.")
    return render(request, "console/sign_in.html", {"form": form, "next": next_url})


def _verified(request: HttpRequest, device: Any, *, how: str) -> None:
    """This session passed the second factor: a new session key (the one before it was only
    password-signed), marked verified, remembered for "sign out everywhere"."""
    user = request.user
    request.session.cycle_key()
    otp_login(request, device)
    people.record_session(user=user, session_key=request.session.session_key)
    lockout.forget_account_failures(email=user.email)
    people.signed_in(user=user, address=client_address(request) or "", second_factor=how)


def second_factor(request: HttpRequest) -> HttpResponse:
    """The authenticator's code (or a recovery code) after the password; at the first sign-in,
    the enrolment of the authenticator instead."""
    next_url = safe_next(request)
    if is_verified(request):
        return HttpResponseRedirect(next_url)
    if not request.user.is_authenticated or request.user.is_staff:
        # Staff confirm their sign-in in the admin, with the admin's authenticator.
        return HttpResponseRedirect(with_next("console:sign_in", next_url))
    user = request.user
    device = two_factor.confirmed_authenticator(user)
    if device is None:
        return enrolment(request, next_url=next_url, replacing=False)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        address = client_address(request) or ""
        code = form.cleaned_data["code"]
        try:
            attempt = lockout.begin(email=user.email, address=address)
            how = None
            if two_factor.verify_code(user=user, code=code) is not None:
                how = "totp"
            elif two_factor.use_recovery_code(user=user, code=code):
                how = "recovery_code"
            if how is None:
                lockout.record_failure(attempt=attempt, known_email=user.email)
            else:
                lockout.succeeded(attempt)
        except DomainError as error:
            return locked_page(request, error)
        if how is not None:
            _verified(request, device, how=how)
            if how == "recovery_code":
                left = two_factor.recovery_codes_left(user)
                messages.warning(
                    request,
                    f"You signed in with a recovery code; {left} left. Make new ones on your "
                    "account page, or set up your authenticator again there.",
                )
            return HttpResponseRedirect(next_url)
        form.add_error("code", "That code is not right. Try the next one your app shows.")
    return render(request, "console/second_factor.html", {"form": form, "next": next_url})


def enrolment(request: HttpRequest, *, next_url: str, replacing: bool) -> HttpResponse:
    """Sets up an authenticator: at the first sign-in, or to replace the current one ("reset
    2FA", from a verified session and with the password, the old one working until the new one
    is confirmed). The key stays the same across reloads of this session's page. Not for staff
    accounts: their authenticator is the admin's."""
    user = request.user
    if user.is_staff:
        return redirect("console:home")
    device = two_factor.pending_authenticator(
        user=user, device_id=request.session.get(_PENDING_DEVICE)
    )
    request.session[_PENDING_DEVICE] = device.pk
    data = request.POST or None
    form = NewAuthenticatorForm(user, data) if replacing else EnrolmentForm(data)
    valid, locked = False, None
    if request.method == "POST" and replacing:
        valid, locked = password_form_valid(request, form, "password")
    elif request.method == "POST":
        valid = form.is_valid()
    if locked is not None:
        return locked
    if valid:
        address = client_address(request) or ""
        try:
            attempt = lockout.begin(email=user.email, address=address)
            codes = two_factor.confirm_enrolment(
                device=device, code=form.cleaned_data["code"], email=user.email
            )
            if codes is None:
                lockout.record_failure(attempt=attempt, known_email=user.email)
            else:
                lockout.succeeded(attempt)
        except DomainError as error:
            return locked_page(request, error)
        if codes is not None:
            request.session.pop(_PENDING_DEVICE, None)
            if not replacing:
                _verified(request, device, how="enrolment")
            else:
                otp_login(request, device)
            # Sessions that did not confirm this authenticator end (none of them saw its key).
            people.end_sessions(user=user, keep=request.session.session_key, audit=False)
            context = {"codes": codes, "next": next_url, "first": not replacing}
            return render(request, "console/recovery_codes.html", context)
        form.add_error("code", "That is not the code the app shows now. Try the next one.")
    context = {
        "form": form,
        "next": next_url,
        "replacing": replacing,
        "qr_svg": two_factor.qr_svg(device, user.email),
        "secret": two_factor.typed_secret(device),
        "issuer": settings.CONSOLE_TOTP_ISSUER,
    }
    return render(request, "console/enrol.html", context)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    user = request.user
    if user.is_authenticated:
        session_key = request.session.session_key
        logout(request)
        people.signed_out(user=user, session_key=session_key, address=client_address(request) or "")
    return redirect("console:sign_in")
