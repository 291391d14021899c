"""Invitations and memberships: who belongs to an app's console, with which role.

An app always keeps at least one owner. Every change that could take away an owner (demote,
remove, leave) locks the app's owner memberships (SELECT ... FOR UPDATE, in primary key order)
and counts them under the lock, so two owners demoting each other at the same instant cannot
both succeed: the second waits for the first, then sees one owner left and is refused.
Only membership rows are locked, never the app row the API's hot paths read and lock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts import crypto
from accounts.audit import Actor
from accounts.models import ActorType, App, AuditAction
from console.models import Invitation, Membership, Role
from console.services.events import person_event
from portal.errors import DomainError, ErrorCode


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    url: str
    """The link with the token: shown once, to whoever invited, and never stored."""


def normalise_email(email: str) -> str:
    """Console people sign in by e-mail, compared in lower case; it is also their username."""
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise DomainError(ErrorCode.INVALID_REQUEST, f"{email!r} is not an e-mail address") from exc
    return email


def _role(role: str) -> Role:
    if role not in Role.values:
        raise DomainError(
            ErrorCode.INVALID_REQUEST, f"the role must be one of {', '.join(Role.values)}"
        )
    return Role(role)


def invitation_url(token: str) -> str:
    base = settings.CONSOLE_BASE_URL.rstrip("/")
    return f"{base}{reverse('console:invitation', args=[token])}"


def check_invitable(app: App) -> None:
    """Raises DomainError when nobody can be invited to `app`: a disabled app's console is
    closed (an invitation could not be accepted)."""
    if not app.is_active:
        raise DomainError(ErrorCode.APP_DISABLED, "This app is disabled.")


def invite(*, app: App, email: str, role: str, actor: Actor) -> NewInvitation:
    """An invitation of `email` to `app` as `role`, valid CONSOLE_INVITATION_HOURS."""
    check_invitable(app)
    email = normalise_email(email)
    role = _role(role)
    if Membership.objects.filter(app=app, user__username=email).exists():
        raise DomainError(ErrorCode.INVALID_REQUEST, f"{email} is already a member of this app")
    token = crypto.new_secret()
    now = timezone.now()
    with transaction.atomic():
        invitation = Invitation.objects.create(
            app=app,
            email=email,
            role=role,
            token_digest=crypto.digest(token),
            # Customers see who invited on their Team page: a colleague by e-mail, the portal's
            # staff (or an operator's command) as "staff", never a staff account's name.
            invited_by=actor.name if actor.type == ActorType.CONSOLE else "staff",
            created_at=now,
            expires_at=now + dt.timedelta(hours=settings.CONSOLE_INVITATION_HOURS),
        )
        person_event(
            AuditAction.TEAM_INVITED,
            email=email,
            actor=actor,
            app_id=app.pk,
            role=role,
            expires_at=invitation.expires_at.isoformat(),
        )
    return NewInvitation(invitation=invitation, url=invitation_url(token))


def link_digest(token: str) -> str:
    """What is kept of an opened link until it is accepted (in the session): the token's
    digest, as in the invitation's row, never the token, which the session store keeps readable."""
    return crypto.digest(token)


def invitation_for_digest(token_digest: str) -> Invitation | None:
    """The invitation of a link's token digest, whatever its state (the caller says why it
    cannot be used); None for a token that was never issued."""
    return Invitation.objects.select_related("app").filter(token_digest=token_digest).first()


def check_usable(invitation: Invitation) -> None:
    """Raises DomainError saying why the invitation can no longer be accepted."""
    now = timezone.now()
    if invitation.accepted_at is not None:
        raise DomainError(ErrorCode.INVALID_REQUEST, "This invitation was already used.")
    if invitation.revoked_at is not None:
        raise DomainError(ErrorCode.INVALID_REQUEST, "This invitation was withdrawn.")
    if invitation.expires_at <= now:
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            "This invitation has expired. Ask an owner of the app for a new one.",
        )
    if not invitation.app.is_active:
        raise DomainError(ErrorCode.APP_DISABLED, "This app is disabled.")


def _spend(invitation: Invitation) -> None:
    """Marks the invitation used: one conditional UPDATE, so a link works once even when
    opened twice at the same instant."""
    now = timezone.now()
    spent = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(accepted_at=now)
    if not spent:
        invitation.refresh_from_db()
        check_usable(invitation)
        raise DomainError(ErrorCode.INVALID_REQUEST, "This invitation can no longer be used.")
    invitation.accepted_at = now


def _join(invitation: Invitation, user: Any) -> Membership:
    """The membership, or DomainError when the person has one already (also when another of
    their invitations to the app was accepted at the same instant: the unique constraint says so,
    and the caller's transaction leaves this invitation unspent)."""
    already = DomainError(
        ErrorCode.INVALID_REQUEST, f"You are already a member of {invitation.app.name}."
    )
    if Membership.objects.filter(app=invitation.app, user=user).exists():
        raise already
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                user=user, app=invitation.app, role=invitation.role
            )
    except IntegrityError as exc:
        raise already from exc
    person_event(
        AuditAction.TEAM_JOINED,
        email=user.email,
        app_id=invitation.app_id,
        role=invitation.role,
        invited_by=invitation.invited_by,
    )
    return membership


def is_for(invitation: Invitation, user: Any) -> bool:
    """Whether `user` is the account the invitation was made for: the one named by the invited
    address (a console person's username is their e-mail), as `existing_account` finds it."""
    return user.get_username().lower() == invitation.email


def staff_refusal(invitation: Invitation) -> DomainError:
    """A staff account named by the invited address does not join: staff sign in at the admin
    only, and the console's pages, its audit trail and "sign out everywhere" are made for
    console accounts. The person gets a console account of its own, under another address. The
    words do not say "staff": whoever holds the link (the inviting owner too) would learn which
    addresses are staff accounts; the staff member knows."""
    return DomainError(
        ErrorCode.INVALID_REQUEST,
        f"The account {invitation.email} cannot join a customer's console (it is not a console "
        "account). Ask for an invitation to another e-mail address: it makes a console account "
        "of its own.",
    )


def accept_as(*, invitation: Invitation, user: Any) -> Membership:
    """Adds the membership to the signed-in person the invitation was made for."""
    if user.is_staff:
        raise staff_refusal(invitation)
    if not is_for(invitation, user):
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            f"This invitation is for {invitation.email}, and you are signed in as "
            f"{user.get_username()}. Sign out, then open the link again.",
        )
    with transaction.atomic():
        _spend(invitation)
        return _join(invitation, user)


def existing_account(email: str) -> Any | None:
    """The account named by `email`, if there is one: the invited person signs in to it rather
    than making a new one."""
    return get_user_model().objects.filter(username=email).first()


def accept_with_new_account(*, invitation: Invitation, password: str) -> Any:
    """Creates the invited person's account with `password` and their membership. Raises
    ValidationError for a password Django's validators refuse."""
    user_model = get_user_model()
    candidate = user_model(username=invitation.email, email=invitation.email)
    validate_password(password, candidate)
    try:
        with transaction.atomic():
            _spend(invitation)
            user = user_model.objects.create_user(
                username=invitation.email, email=invitation.email, password=password
            )
            _join(invitation, user)
    except IntegrityError as exc:  # the account appeared meanwhile
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            f"An account for {invitation.email} exists already: sign in to accept.",
        ) from exc
    return user


def pending_invitations(app: App) -> list[Invitation]:
    return list(
        Invitation.objects.filter(
            app=app,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        ).order_by("expires_at")[:100]
    )


def revoke_invitation(*, invitation: Invitation, actor: Actor) -> None:
    with transaction.atomic():
        withdrawn = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        if not withdrawn:
            raise DomainError(ErrorCode.INVALID_REQUEST, "This invitation is no longer pending.")
        person_event(
            AuditAction.TEAM_INVITATION_REVOKED,
            email=invitation.email,
            actor=actor,
            app_id=invitation.app_id,
        )


def _lock(membership: Membership, verb: str, *, losing_owner: bool) -> Membership:
    """Locks the app's owner memberships (always first, in primary key order, so concurrent
    changes queue without deadlock), then the membership itself, and returns it as it is now.
    Refuses when the change (`losing_owner`: it would no longer be an owner) would leave the
    app without an owner."""
    owners = list(
        Membership.objects.select_for_update()
        .filter(app_id=membership.app_id, role=Role.OWNER)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    current = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(pk=membership.pk)
        .first()
    )
    if current is None:
        raise DomainError(ErrorCode.NOT_FOUND, "This person is no longer a member of the app.")
    if losing_owner and owners == [current.pk]:
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            f"The last owner of an app cannot {verb}: make another member owner first.",
        )
    return current


def change_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    role = _role(role)
    with transaction.atomic():
        current = _lock(membership, "be demoted", losing_owner=role != Role.OWNER)
        if current.role == role:
            return current
        before = current.role
        current.role = role
        current.save(update_fields=["role"])
        person_event(
            AuditAction.TEAM_ROLE_CHANGED,
            email=current.user.email,
            actor=actor,
            app_id=current.app_id,
            before=before,
            after=role,
        )
    return current


def remove(*, membership: Membership, actor: Actor) -> None:
    """Takes the person out of the app (their account stays, with their other apps)."""
    _leave_or_remove(membership, actor, AuditAction.TEAM_REMOVED, "be removed")


def leave(*, membership: Membership) -> None:
    """The signed-in person leaves the app."""
    actor = Actor.console(membership.user.email)
    _leave_or_remove(membership, actor, AuditAction.TEAM_LEFT, "leave")


def _leave_or_remove(membership: Membership, actor: Actor, action: AuditAction, verb: str) -> None:
    with transaction.atomic():
        current = _lock(membership, verb, losing_owner=True)
        current.delete()
        person_event(
            action, email=current.user.email, actor=actor, app_id=current.app_id, role=current.role
        )
