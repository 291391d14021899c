"""The staff admin's way to let a customer's first owner in: an "Invite to the console" action
on the App page, the same as `manage.py invite_console_member`. It lives here, not in
accounts/admin.py, because accounts never imports the console: this module replaces the App
admin with one that has the action (admin modules load in INSTALLED_APPS order, accounts
first). The link is shown once, in the answer to the confirming POST."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest

from accounts.admin import AppAdmin
from accounts.admin_actions import Outcome, StaffAction, StaffActionsMixin
from accounts.audit import Actor
from accounts.models import App
from console.models import Role
from console.services import team


class InvitationForm(forms.Form):
    email = forms.EmailField(max_length=254, label="E-mail of the person")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.OWNER)


def _consequence(app: App) -> str:
    return (
        f"An invitation link to the console of {app.name}, shown once on the next page: it "
        f"works once, for {settings.CONSOLE_INVITATION_HOURS} hours."
    )


def _invite(app: App, actor: Actor, data: Mapping[str, Any]) -> Outcome:
    new = team.invite(app=app, email=data["email"], role=data["role"], actor=actor)
    invitation = new.invitation
    return Outcome(
        f"{invitation.email} is invited to {app.name} as {invitation.role}.",
        shown_once=(
            f"Invitation link for {invitation.email} ({invitation.role}), valid until "
            f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC",
            new.url,
        ),
    )


class AppWithConsoleAdmin(StaffActionsMixin, AppAdmin):
    staff_actions = (
        StaffAction(
            name="invite_console_member",
            label="Invite to the console",
            permission="console.add_invitation",
            perform=_invite,
            check=team.check_invitable,
            consequence=_consequence,
            form=InvitationForm,
            single=True,
        ),
    )

    def get_actions(self, request: HttpRequest) -> dict:
        """On the app's own page only: as a list action it would add a column of checkboxes
        that the apps list has no room for (it fits a laptop screen)."""
        return super(StaffActionsMixin, self).get_actions(request)


admin.site.unregister(App)
admin.site.register(App, AppWithConsoleAdmin)
