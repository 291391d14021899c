"""The person's own page: password, recovery codes, authenticator, sessions, and the apps
they belong to (with a way to leave each)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout, update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from console.access import signed_in
from console.forms import ConfirmPasswordForm
from console.models import Membership
from console.services import people, two_factor
from console.views.people import enrolment, password_form_valid


def _account_page(
    request: HttpRequest,
    *,
    password_form: PasswordChangeForm | None = None,
    codes_form: ConfirmPasswordForm | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    context = {
        "password_form": password_form or PasswordChangeForm(user),
        "codes_form": codes_form or ConfirmPasswordForm(user),
        "codes_left": two_factor.recovery_codes_left(user),
        "memberships": list(
            Membership.objects.filter(user=user).select_related("app").order_by("app__name")
        ),
    }
    return render(request, "console/account.html", context, status=status)


@signed_in
def account(request: HttpRequest) -> HttpResponse:
    return _account_page(request)


@signed_in
@require_POST
def change_password(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, request.POST)
    valid, locked = password_form_valid(request, form, "old_password")
    if locked is not None:
        return locked
    if not valid:
        return _account_page(request, password_form=form, status=400)
    user = form.save()
    update_session_auth_hash(request, user)  # this session stays; the others end
    people.record_session(user=user, session_key=request.session.session_key)
    people.password_changed(user=user, how="changed")
    messages.success(request, "Your password is changed. Your other sessions are signed out.")
    return redirect("console:account")


@signed_in
@require_POST
def new_recovery_codes(request: HttpRequest) -> HttpResponse:
    form = ConfirmPasswordForm(request.user, request.POST)
    valid, locked = password_form_valid(request, form, "password")
    if locked is not None:
        return locked
    if not valid:
        return _account_page(request, codes_form=form, status=400)
    codes = two_factor.regenerate_recovery_codes(user=request.user)
    context = {"codes": codes, "next": "", "first": False}
    return render(request, "console/recovery_codes.html", context)


@signed_in
def reset_two_factor(request: HttpRequest) -> HttpResponse:
    """A new authenticator in place of the current one (a new phone)."""
    return enrolment(request, next_url="", replacing=True)


@signed_in
@require_POST
def sign_out_everywhere(request: HttpRequest) -> HttpResponse:
    """Ends every session of the person, this one included."""
    user = request.user
    people.end_sessions(user=user)
    logout(request)
    messages.success(request, "You are signed out everywhere.")
    return redirect("console:sign_in")
