"""Base for the operators' commands: `--json` prints exactly one JSON object on stdout, for
success and failure alike; failures exit non-zero."""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from portal.errors import DomainError


class JsonCommand(BaseCommand):
    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="Print exactly one JSON object on stdout."
        )
        self.add_command_arguments(parser)

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        """Subclasses add their own arguments here."""

    def run(self, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self, result: dict[str, Any]) -> str:
        """The human-readable form of a result (without --json)."""
        return "\n".join(f"{key}: {value}" for key, value in result.items())

    def run_from_argv(self, argv: list[str]) -> None:
        """With --json, bad arguments too are answered with one JSON object (argparse would
        print its usage on stderr and exit 2)."""
        if "--json" in argv:
            try:
                self.create_parser(argv[0], argv[1]).parse_args(argv[2:])
            except CommandError as exc:
                self._fail_json(exc)
        super().run_from_argv(argv)

    def _fail_json(self, exc: Exception) -> None:
        self.stdout.write(json.dumps({"error": str(exc)}))
        sys.exit(1)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = self.run(**options)
        # ValueError and OverflowError: a number argument no duration can hold (nan, 1e300).
        except (CommandError, DomainError, ValidationError, ValueError, OverflowError) as exc:
            if options["json"]:
                self._fail_json(exc)
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result, default=str))
        else:
            self.stdout.write(self.describe(result))


def iso(moment: Any) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
