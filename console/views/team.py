"""The Team page (owners): members and roles, pending invitations, invite, change a role,
remove; and leaving an app (any member). The services keep an owner in every app."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from console.access import actor, member_of_app
from console.forms import InviteForm, RoleForm
from console.models import Invitation, Membership, Role
from console.services import team
from portal.errors import DomainError


def _team_page(
    request: HttpRequest,
    membership: Membership,
    *,
    invite_form: InviteForm | None = None,
    new_invitation: team.NewInvitation | None = None,
    status: int = 200,
) -> HttpResponse:
    members = list(
        Membership.objects.filter(app=membership.app).select_related("user").order_by("user__email")
    )
    context = {
        "membership": membership,
        "members": members,
        "invitations": team.pending_invitations(membership.app),
        "invite_form": invite_form or InviteForm(),
        "roles": Role.choices,
        "new_invitation": new_invitation,
    }
    return render(request, "console/team.html", context, status=status)


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "console/not_found.html", status=404)


def _member(membership: Membership, member_id: int) -> Membership | None:
    return (
        Membership.objects.filter(app=membership.app, pk=member_id).select_related("user").first()
    )


@member_of_app(Role.OWNER)
def team_page(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    return _team_page(request, membership)


@member_of_app(Role.OWNER)
@require_POST
def invite(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    """The link is shown in this answer only: whoever invites passes it on."""
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            new = team.invite(
                app=membership.app,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=actor(request),
            )
        except DomainError as error:
            form.add_error("email", error.message)
        else:
            return _team_page(request, membership, new_invitation=new)
    return _team_page(request, membership, invite_form=form, status=400)


@member_of_app(Role.OWNER)
@require_POST
def change_role(request: HttpRequest, member_id: int, *, membership: Membership) -> HttpResponse:
    member = _member(membership, member_id)
    if member is None:
        return _not_found(request)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role.")
        return redirect("console:team", app_id=membership.app.app_id)
    try:
        team.change_role(membership=member, role=form.cleaned_data["role"], actor=actor(request))
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{member.user.email} is now {form.cleaned_data['role']}.")
    if member.pk == membership.pk and form.cleaned_data["role"] != Role.OWNER:
        return redirect("console:overview", app_id=membership.app.app_id)
    return redirect("console:team", app_id=membership.app.app_id)


@member_of_app(Role.OWNER)
@require_POST
def remove(request: HttpRequest, member_id: int, *, membership: Membership) -> HttpResponse:
    member = _member(membership, member_id)
    if member is None:
        return _not_found(request)
    try:
        team.remove(membership=member, actor=actor(request))
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("console:team", app_id=membership.app.app_id)
    messages.success(request, f"{member.user.email} is no longer a member.")
    if member.pk == membership.pk:
        return redirect("console:home")
    return redirect("console:team", app_id=membership.app.app_id)


@member_of_app(Role.OWNER)
@require_POST
def revoke_invitation(
    request: HttpRequest, invitation_id: int, *, membership: Membership
) -> HttpResponse:
    invitation = Invitation.objects.filter(app=membership.app, pk=invitation_id).first()
    if invitation is None:
        return _not_found(request)
    try:
        team.revoke_invitation(invitation=invitation, actor=actor(request))
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"The invitation of {invitation.email} is withdrawn.")
    return redirect("console:team", app_id=membership.app.app_id)


@member_of_app(Role.VIEWER)
@require_POST
def leave(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    try:
        team.leave(membership=membership)
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("console:account")
    messages.success(request, f"You left {membership.app.name}.")
    return redirect("console:home")
