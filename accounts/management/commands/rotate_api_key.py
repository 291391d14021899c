import datetime as dt
from argparse import ArgumentParser
from typing import Any

from accounts import selectors, services
from accounts.audit import Actor
from portal.commands import JsonCommand, iso


class Command(JsonCommand):
    help = (
        "Replace an API key by a new one with the same app, name and scopes. The old key keeps "
        "working for the grace period, then expires. The new key is shown once, here."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("key_id")
        parser.add_argument("--grace-hours", type=float, default=24.0)

    def run(self, **options: Any) -> dict[str, Any]:
        rotation = services.rotate_api_key(
            api_key=selectors.api_key_by_key_id(options["key_id"]),
            grace=dt.timedelta(hours=options["grace_hours"]),
            actor=Actor.operator("rotate_api_key"),
        )
        return {
            "key_id": rotation.new.api_key.key_id,
            "api_key": rotation.new.full_key,
            "old_key_id": rotation.old_key.key_id,
            "old_key_expires_at": iso(rotation.old_key.expires_at),
        }

    def describe(self, result: dict[str, Any]) -> str:
        return super().describe(result) + "\n\nStore the api_key now: it is shown only this once."
