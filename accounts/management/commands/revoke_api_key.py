from argparse import ArgumentParser
from typing import Any

from accounts import selectors, services
from accounts.audit import Actor
from portal.commands import JsonCommand, iso


class Command(JsonCommand):
    help = "Revoke an API key: every request with it is refused from now on."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("key_id")

    def run(self, **options: Any) -> dict[str, Any]:
        key = services.revoke_api_key(
            api_key=selectors.api_key_by_key_id(options["key_id"]),
            actor=Actor.operator("revoke_api_key"),
        )
        return {"key_id": key.key_id, "revoked_at": iso(key.revoked_at)}
