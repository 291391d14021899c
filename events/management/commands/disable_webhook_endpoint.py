from argparse import ArgumentParser
from typing import Any

from accounts.audit import Actor
from events import selectors, services
from portal.commands import JsonCommand, iso


class Command(JsonCommand):
    help = (
        "Disable a webhook endpoint: no events are sent to it from now on; deliveries still "
        "pending wait, and fail after 3 days unless it is enabled again (staff admin, console)."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("endpoint_id")

    def run(self, **options: Any) -> dict[str, Any]:
        endpoint = services.set_endpoint_enabled(
            endpoint=selectors.endpoint_by_id(options["endpoint_id"]),
            enabled=False,
            actor=Actor.operator("disable_webhook_endpoint"),
        )
        return {
            "endpoint_id": endpoint.endpoint_id,
            "enabled": endpoint.is_enabled,
            "disabled_at": iso(endpoint.disabled_at),
        }
