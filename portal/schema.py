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
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors per field (dotted path for nested fields).",
    )

    class Meta:
        ref_name = "Error"


COMMON = (ErrorCode.INVALID_REQUEST, ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE)


def error_responses(*codes: ErrorCode) -> dict[int, Any]:
    """`responses` entries documenting which error codes each status can carry."""
    by_status: dict[int, list[ErrorCode]] = defaultdict(list)
    for code in (*codes, ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE):
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
