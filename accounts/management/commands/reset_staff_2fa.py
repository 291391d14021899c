from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from accounts.audit import Actor
from accounts.staff_2fa import remove_authenticators
from portal.commands import JsonCommand


class Command(JsonCommand):
    help = (
        "Remove a staff member's authenticator (a lost phone): they set up a new one at their "
        "next sign-in, after the password."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")

    def run(self, **options: Any) -> dict[str, Any]:
        username = options["username"]
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        removed = remove_authenticators(user=user, actor=Actor.operator("reset_staff_2fa"))
        return {"username": username, "devices_removed": removed}
