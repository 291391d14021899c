from argparse import ArgumentParser
from typing import Any

from django.utils import timezone

from accounts import selectors
from accounts.models import ApiKey, App
from portal.commands import JsonCommand, iso
from portal.errors import DomainError, ErrorCode


class Command(JsonCommand):
    help = "List API keys (never a secret or a digest)."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--app", metavar="APP_ID", help="Only this app's keys.")

    def run(self, **options: Any) -> dict[str, Any]:
        keys = ApiKey.objects.order_by("app__name", "-created_at")
        if options["app"]:
            app = App.objects.filter(app_id=options["app"]).first()
            if app is None:
                raise DomainError(ErrorCode.NOT_FOUND, f"no app with app_id {options['app']!r}")
            keys = keys.filter(app=app)
        now = timezone.now()
        return {
            "keys": [
                {
                    "key_id": key.key_id,
                    "app_id": key.app.app_id,
                    "name": key.name,
                    "scopes": key.scopes,
                    "status": selectors.api_key_status(key, rotated=key.rotated, now=now).value,
                    "created_at": iso(key.created_at),
                    "expires_at": iso(key.expires_at),
                    "revoked_at": iso(key.revoked_at),
                    "last_used_at": iso(key.last_used_at),
                }
                for key in selectors.api_keys_with_rotation(keys)
            ]
        }

    def describe(self, result: dict[str, Any]) -> str:
        rows = [
            f"{k['key_id']}  {k['app_id']}  {k['status']:<8}  expires {k['expires_at']}  "
            f"{','.join(k['scopes'])}  {k['name']}"
            for k in result["keys"]
        ]
        return "\n".join(rows) or "no keys"
