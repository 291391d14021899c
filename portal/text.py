"""What text the portal stores: no control characters, no lone surrogates.

A NUL is refused by PostgreSQL, a surrogate by every UTF-8 codec, and a line break in a name
would end up in an e-mail header; so they are refused where text comes in.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db.models import TextChoices

from portal.errors import DomainError, ErrorCode

_FORBIDDEN_CATEGORIES = {"Cc", "Cs"}


def has_forbidden_characters(value: str) -> bool:
    return any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in value)


def validate_plain_text(value: str) -> None:
    """A model field validator."""
    if has_forbidden_characters(value):
        raise ValidationError("must not contain control characters", code="control_characters")


def named_choices(raw: Iterable[str], choices: type[TextChoices], names: str) -> list[str]:
    """The values named in `raw` (stripped, blanks left out), in `choices`' own order; an
    unknown one is INVALID_REQUEST, naming it and the known ones (`names`: "scope(s)")."""
    wanted = {name.strip() for name in raw if name.strip()}
    unknown = wanted - set(choices.values)
    if unknown:
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            f"unknown {names}: {', '.join(sorted(unknown))}; known: {', '.join(choices.values)}",
        )
    return [name for name in choices.values if name in wanted]
