"""Users of the app: search, a user's page (status, devices, last codes, audit timeline),
disable, enable, delete, and the deletion's request and status."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts import selectors, services
from accounts.admin_forms import ReasonForm
from accounts.models import (
    AuditEvent,
    DeletionRequest,
    LinkedUser,
)
from accounts.selectors import PUBLIC_ID
from console.access import actor, member_of_app
from console.models import Membership, Role
from console.page_forms import DeleteUserForm
from portal.errors import DomainError

RESULTS_SHOWN = 50
DEVICES_SHOWN = 20
CODES_SHOWN = 20
TIMELINE_SHOWN = 50


@member_of_app()
def user_search(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    """By user id (in any case) or by external id, exactly or by its start, in its exact case.
    Each is one indexed lookup that stops at the first RESULTS_SHOWN + 1 matches."""
    term = request.GET.get("q", "").strip()
    found: list[LinkedUser] = []
    more = False
    if term and "\x00" not in term:  # no id holds NUL, and PostgreSQL refuses it in text
        users = LinkedUser.objects.filter(app=membership.app)
        if PUBLIC_ID.match(term.lower()):
            found += users.filter(user_id=term.lower())
        by_prefix = list(users.filter(external_id__prefix=term)[: RESULTS_SHOWN + 1])
        more = len(by_prefix) > RESULTS_SHOWN
        found += sorted(
            (user for user in by_prefix[:RESULTS_SHOWN] if user not in found),
            key=lambda user: (user.external_id != term, user.external_id),
        )
    context = {"membership": membership, "term": term, "users": found, "more": more}
    return render(request, "console/users.html", context)


def _user_of_app(membership: Membership, user_id: str) -> LinkedUser | None:
    return LinkedUser.objects.filter(app=membership.app, user_id=user_id).first()


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "console/not_found.html", status=404)


def _gone_or_not_found(request: HttpRequest, membership: Membership, user_id: str) -> HttpResponse:
    """A user purged after its deletion: its deletion request tells what happened."""
    deletion = DeletionRequest.objects.filter(app=membership.app, deleted_user_id=user_id).first()
    if deletion is None:
        return _not_found(request)
    return redirect(
        "console:deletion", app_id=membership.app.app_id, request_id=deletion.request_id
    )


@member_of_app()
def user_detail(request: HttpRequest, user_id: str, *, membership: Membership) -> HttpResponse:
    user = _user_of_app(membership, user_id)
    if user is None:
        return _gone_or_not_found(request, membership, user_id)
    deletion = DeletionRequest.objects.filter(user=user).first() if user.deleted_at else None
    context = {
        "membership": membership,
        "person": user,
        "disabled": selectors.how_disabled(user) if user.is_disabled else None,
        "deletion": deletion,
        "devices": list(
            user.devices.order_by("-is_active", "-last_seen_at", "-pk")[:DEVICES_SHOWN]
        ),
        "codes": selectors.recent_codes(user, limit=CODES_SHOWN),
        "timeline": list(
            AuditEvent.objects.filter(user_ref=user.user_id, app=membership.app).order_by(
                "-occurred_at", "-id"
            )[:TIMELINE_SHOWN]
        ),
        "can_change": membership.allows(Role.DEVELOPER),
        "reason_form": ReasonForm(),
    }
    return render(request, "console/user_detail.html", context)


def _set_disabled(
    request: HttpRequest, membership: Membership, user_id: str, *, disabled: bool
) -> HttpResponse:
    user = _user_of_app(membership, user_id)
    if user is None:
        return _not_found(request)
    back = redirect("console:user_detail", app_id=membership.app.app_id, user_id=user.user_id)
    if request.method != "POST":
        return back
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("reason", ["Invalid reason."])))
        return back
    try:
        services.check_disable(user, disabled=disabled)
        services.set_user_disabled(
            user=user,
            disabled=disabled,
            actor=actor(request),
            reason=form.cleaned_data["reason"] if disabled else "",
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"User {user.user_id} is {'disabled' if disabled else 'enabled'}."
        )
    return back


@member_of_app(Role.DEVELOPER)
def user_disable(request: HttpRequest, user_id: str, *, membership: Membership) -> HttpResponse:
    """Redemptions and the access tokens of its devices are refused until enabled again."""
    return _set_disabled(request, membership, user_id, disabled=True)


@member_of_app(Role.DEVELOPER)
def user_enable(request: HttpRequest, user_id: str, *, membership: Membership) -> HttpResponse:
    return _set_disabled(request, membership, user_id, disabled=False)


@member_of_app(Role.DEVELOPER)
def user_delete(request: HttpRequest, user_id: str, *, membership: Membership) -> HttpResponse:
    """Behind typing the external id: irreversible, and the id is what the customer knows."""
    user = _user_of_app(membership, user_id)
    if user is None:
        return _gone_or_not_found(request, membership, user_id)
    refusal = None
    try:
        services.check_deletable(user)
    except DomainError as exc:
        refusal = exc.message
    form = DeleteUserForm(request.POST or None, expected=user.external_id)
    if request.method == "POST" and refusal is None and form.is_valid():
        deletion = services.request_user_deletion(user=user, actor=actor(request))
        messages.success(
            request,
            f"User {user.user_id} is deleted: it can no longer be used, and its data is purged "
            "in the background.",
        )
        return redirect(
            "console:deletion", app_id=membership.app.app_id, request_id=deletion.request_id
        )
    context = {"membership": membership, "person": user, "form": form, "refusal": refusal}
    return render(request, "console/user_delete.html", context)


@member_of_app()
def deletion(request: HttpRequest, request_id: str, *, membership: Membership) -> HttpResponse:
    found = DeletionRequest.objects.filter(app=membership.app, request_id=request_id).first()
    if found is None:
        return _not_found(request)
    return render(request, "console/deletion.html", {"membership": membership, "deletion": found})
