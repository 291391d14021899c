"""OpenAPI helpers: the error envelope and per-endpoint error documentation."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers

from portal.errors import ErrorCode


class ErrorSerializer(serializers.Serializer):
    errorCode = serializers.ChoiceField(choices=[code.value for code in ErrorCode])
    message = serializers.CharField(help_text="A human-readable explanation.")
    request_id = serializers.CharField(help_text="Also in the X-Request-ID header.")
    ref = serializers.CharField(help_text="The same as request_id, for clients that read `ref`.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors per field (dotted path for nested fields).",
    )

    class Meta:
        ref_name = "Error"


# What any endpoint that takes a JSON body can answer about the body itself.
BODY_ERRORS = (
    ErrorCode.INVALID_REQUEST,
    ErrorCode.PAYLOAD_TOO_LARGE,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
)


def error_responses(*codes: ErrorCode) -> dict[int, Any]:
    """`responses` entries documenting which error codes each status can carry."""
    by_status: dict[int, list[ErrorCode]] = defaultdict(list)
    every_endpoint = (
        ErrorCode.RATE_LIMITED,
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.SERVICE_UNAVAILABLE,
    )
    for code in (*codes, *every_endpoint):
        if code not in by_status[code.status]:
            by_status[code.status].append(code)
    return {
        status: OpenApiResponse(
            response=ErrorSerializer,
            description="errorCode: " + ", ".join(f"`{code}`" for code in group),
            examples=[
                OpenApiExample(
                    code.value,
                    value={"errorCode": code.value, "message": "…", "request_id": "…"},
                    status_codes=[str(status)],
                    response_only=True,
                )
                for code in group
            ],
        )
        for status, group in sorted(by_status.items())
    }
