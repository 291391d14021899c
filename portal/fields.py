"""Serializer fields shared by both apps' APIs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from portal.text import has_forbidden_characters


class TextField(serializers.CharField):
    """A string taken byte for byte (no trimming) that refuses control characters."""

    default_error_messages = {
        "control_characters": "must not contain control characters",
        "invalid": "must be a string",
        "blank": "must not be blank",
        "max_length": "must be at most {max_length} characters",
        "min_length": "must be at least {min_length} characters",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        # CharField would turn numbers and booleans into strings; a wrong type is an error.
        if not isinstance(data, str):
            self.fail("invalid")
        if has_forbidden_characters(data):
            self.fail("control_characters")
        return super().to_internal_value(data)
