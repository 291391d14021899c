from argparse import ArgumentParser
from typing import Any

from accounts.audit import Actor
from accounts.models import App
from events import selectors, services
from portal.commands import JsonCommand
from portal.errors import DomainError, ErrorCode


class Command(JsonCommand):
    help = (
        "Create a webhook endpoint for an app (at most 5 per app). Its signing secret is "
        "shown once, here."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--app", metavar="APP_ID", required=True)
        parser.add_argument("--url", required=True)
        parser.add_argument(
            "--events",
            default="",
            help="Comma-separated event types (default: all of them).",
        )

    def run(self, **options: Any) -> dict[str, Any]:
        app = App.objects.filter(app_id=options["app"]).first()
        if app is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"no app with app_id {options['app']!r}")
        wanted = options["events"].split(",")
        created = services.create_endpoint(
            app=app,
            url=options["url"],
            event_types=[name for name in wanted if name.strip() != selectors.ALL_EVENTS],
            actor=Actor.operator("create_webhook_endpoint"),
        )
        return {
            "endpoint_id": created.endpoint.endpoint_id,
            "url": created.endpoint.url,
            "events": selectors.event_types_shown(created.endpoint),
            "secret": created.secret,
        }

    def describe(self, result: dict[str, Any]) -> str:
        return super().describe(result) + "\n\nStore the secret now: it is shown only this once."
