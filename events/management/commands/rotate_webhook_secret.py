from argparse import ArgumentParser
from typing import Any

from accounts.audit import Actor
from events import selectors, services
from portal.commands import JsonCommand


class Command(JsonCommand):
    help = (
        "Give a webhook endpoint a new signing secret, shown once, here. The old secret keeps "
        "signing beside it (two v1= in Portal-Signature) for 24 hours."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("endpoint_id")

    def run(self, **options: Any) -> dict[str, Any]:
        rotated = services.rotate_secret(
            endpoint=selectors.endpoint_by_id(options["endpoint_id"]),
            actor=Actor.operator("rotate_webhook_secret"),
        )
        return {"endpoint_id": rotated.endpoint.endpoint_id, "secret": rotated.secret}

    def describe(self, result: dict[str, Any]) -> str:
        return super().describe(result) + "\n\nStore the secret now: it is shown only this once."
