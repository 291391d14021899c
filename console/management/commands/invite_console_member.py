from argparse import ArgumentParser
from typing import Any

from accounts.audit import Actor
from accounts.models import App
from console.models import Role
from console.services import team
from portal.commands import JsonCommand, iso
from portal.errors import DomainError, ErrorCode


class Command(JsonCommand):
    help = (
        "Invite a person to an app's console (the way in for an app's first owner). Prints the "
        "invitation link: single use, valid CONSOLE_INVITATION_HOURS (72), shown only here."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--app", required=True, metavar="APP_ID")
        parser.add_argument("--email", required=True)
        parser.add_argument("--role", required=True, choices=Role.values)

    def run(self, **options: Any) -> dict[str, Any]:
        app = App.objects.filter(app_id=options["app"]).first()
        if app is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"no app with app_id {options['app']!r}")
        new = team.invite(
            app=app,
            email=options["email"],
            role=options["role"],
            actor=Actor.operator("invite_console_member"),
        )
        return {"invitation_url": new.url, "expires_at": iso(new.invitation.expires_at)}

    def describe(self, result: dict[str, Any]) -> str:
        return (
            super().describe(result)
            + "\n\nSend the link to the person now: it is shown only this once."
        )
