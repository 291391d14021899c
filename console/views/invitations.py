"""Accepting an invitation. The link's token is taken off the URL at once (its digest kept in
the session, much as Django's password reset keeps its token), so it never sits in the address
bar, the history or a Referer header while the person reads the page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse

from console.access import is_verified
from console.forms import NewPasswordForm
from console.services import people, team
from console.views.people import with_next
from portal.errors import DomainError

_LINK = "console_invitation_digest"  # the session key the link's token digest is kept under


def open_link(request: HttpRequest, token: str) -> HttpResponse:
    request.session[_LINK] = team.link_digest(token)
    return redirect("console:invitation_accept")


def _refused(request: HttpRequest, message: str, status: int = 400) -> HttpResponse:
    return render(request, "console/invitation.html", {"refusal": message}, status=status)


def accept(request: HttpRequest) -> HttpResponse:
    token_digest = request.session.get(_LINK, "")
    invitation = team.invitation_for_digest(token_digest) if token_digest else None
    if invitation is None:
        return _refused(request, "This invitation link is not valid.", status=404)
    try:
        team.check_usable(invitation)
    except DomainError as error:
        return _refused(request, error.message, status=410)
    here = reverse("console:invitation_accept")
    user = request.user
    context = {"invitation": invitation}
    if user.is_authenticated:
        if not team.is_for(invitation, user):
            message = (
                f"This invitation is for {invitation.email}, and you are signed in as "
                f"{user.get_username()}. Sign out, then open the link again."
            )
            return _refused(request, message, status=403)
        if user.is_staff:
            return _refused(request, team.staff_refusal(invitation).message, status=403)
        if not is_verified(request):
            return HttpResponseRedirect(with_next("console:second_factor", here))
        if request.method == "POST":
            try:
                membership = team.accept_as(invitation=invitation, user=user)
            except DomainError as error:
                return _refused(request, error.message)
            request.session.pop(_LINK, None)
            messages.success(request, f"You joined {membership.app.name}.")
            return redirect("console:overview", app_id=membership.app.app_id)
        return render(request, "console/invitation.html", {**context, "join": True})
    account = team.existing_account(invitation.email)
    if account is not None:
        if account.is_staff:
            return _refused(request, team.staff_refusal(invitation).message, status=403)
        context["sign_in_url"] = with_next("console:sign_in", here)
        return render(request, "console/invitation.html", context)
    form = NewPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = team.accept_with_new_account(
                invitation=invitation, password=form.cleaned_data["password1"]
            )
        except ValidationError as error:
            form.add_error("password1", error)
        except DomainError as error:
            return _refused(request, error.message)
        else:
            request.session.pop(_LINK, None)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            people.record_session(user=user, session_key=request.session.session_key)
            overview = reverse("console:overview", args=[invitation.app.app_id])
            return HttpResponseRedirect(with_next("console:second_factor", overview))
    return render(request, "console/invitation.html", {**context, "form": form})
