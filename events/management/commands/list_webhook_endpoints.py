from argparse import ArgumentParser
from typing import Any

from accounts.models import App
from events import selectors
from portal.commands import JsonCommand, iso
from portal.errors import DomainError, ErrorCode


class Command(JsonCommand):
    help = "List webhook endpoints (never a secret)."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--app", metavar="APP_ID", help="Only this app's endpoints.")

    def run(self, **options: Any) -> dict[str, Any]:
        app = None
        if options["app"]:
            app = App.objects.filter(app_id=options["app"]).first()
            if app is None:
                raise DomainError(ErrorCode.NOT_FOUND, f"no app with app_id {options['app']!r}")
        endpoints = []
        for endpoint in selectors.endpoints_of(app):
            summary = selectors.endpoint_summary(endpoint)
            for name in ("created_at", "disabled_at", "failing_since"):
                summary[name] = iso(summary[name])
            endpoints.append(summary)
        return {"endpoints": endpoints}

    def describe(self, result: dict[str, Any]) -> str:
        rows = [
            f"{e['endpoint_id']}  {e['app_id']}  {'enabled ' if e['enabled'] else 'disabled'}  "
            f"{e['url']}  {','.join(e['events'])}"
            for e in result["endpoints"]
        ]
        return "\n".join(rows) or "no webhook endpoints"
