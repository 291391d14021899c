from argparse import ArgumentParser
from typing import Any

from accounts import services
from accounts.audit import Actor
from accounts.models import App
from portal.commands import JsonCommand, iso
from portal.errors import DomainError, ErrorCode


class Command(JsonCommand):
    help = "Create an API key for an app. The full key is shown once, here, and never again."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--app", required=True, metavar="APP_ID")
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scopes", required=True, help="Comma-separated: user.link,user.read,user.delete"
        )
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="Default: API_KEY_DEFAULT_EXPIRY_DAYS (365).",
        )

    def run(self, **options: Any) -> dict[str, Any]:
        app = App.objects.filter(app_id=options["app"]).first()
        if app is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"no app with app_id {options['app']!r}")
        name = options["name"].strip()
        if not name:
            raise DomainError(ErrorCode.INVALID_REQUEST, "the key name must not be blank")
        new = services.create_api_key(
            app=app,
            name=name,
            scopes=options["scopes"].split(","),
            expires_in_days=options["expires_in_days"],
            actor=Actor.operator("create_api_key"),
        )
        return {
            "key_id": new.api_key.key_id,
            "api_key": new.full_key,
            "scopes": new.api_key.scopes,
            "expires_at": iso(new.api_key.expires_at),
        }

    def describe(self, result: dict[str, Any]) -> str:
        return super().describe(result) + "\n\nStore the api_key now: it is shown only this once."
