"""What text the portal stores: no control characters, no lone surrogates.

A NUL is refused by PostgreSQL, a surrogate by every UTF-8 codec, and a line break in a name
would end up in an e-mail header; so they are refused where text comes in.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

_FORBIDDEN_CATEGORIES = {"Cc", "Cs"}


def has_forbidden_characters(value: str) -> bool:
    return any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in value)


def validate_plain_text(value: str) -> None:
    """A model field validator."""
    if has_forbidden_characters(value):
        raise ValidationError("must not contain control characters", code="control_characters")
