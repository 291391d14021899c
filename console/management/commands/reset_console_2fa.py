from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model

from accounts.audit import Actor
from console.services import team, two_factor
from portal.commands import JsonCommand
from portal.errors import DomainError, ErrorCode


class Command(JsonCommand):
    help = (
        "Remove a console person's authenticator and recovery codes (phone and codes both lost) "
        "and end their sessions: they set up a new authenticator at their next sign-in, after "
        "the password. Staff accounts: reset_staff_2fa."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--email", required=True)

    def run(self, **options: Any) -> dict[str, Any]:
        email = team.normalise_email(options["email"])
        user = get_user_model().objects.filter(username=email, is_staff=False).first()
        if user is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"no console person {email!r}")
        removed = two_factor.remove_second_factor(
            user=user, actor=Actor.operator("reset_console_2fa")
        )
        return {"email": email, **removed}
