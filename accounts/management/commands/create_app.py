from argparse import ArgumentParser
from typing import Any

from accounts import services
from portal.commands import JsonCommand
from portal.errors import DomainError, ErrorCode


class Command(JsonCommand):
    help = "Create an app (a customer tenant)."

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--contact-email",
            action="append",
            default=[],
            dest="contact_emails",
            help="Who hears about expiring keys; repeat for several.",
        )

    def run(self, **options: Any) -> dict[str, Any]:
        name = options["name"].strip()
        if not name:
            raise DomainError(ErrorCode.INVALID_REQUEST, "the app name must not be blank")
        app = services.create_app(name=name, contact_emails=options["contact_emails"])
        return {"app_id": app.app_id, "name": app.name}
