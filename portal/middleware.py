"""Request plumbing that applies to every answer: request ids, early 413s, the error envelope
for failures raised outside DRF views."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from portal.errors import ApiError, ErrorCode, error_response, handle_uncaught

_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTENT_LENGTH = re.compile(r"[0-9]+")


def is_api_path(path: str) -> bool:
    return not path.startswith(("/admin/", "/static/"))


class RequestIdMiddleware:
    """Gives each request an id (echoing a well-formed incoming `X-Request-ID`) and returns it
    in the `X-Request-ID` header of every answer, so logs and support tickets meet."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        # fullmatch: `$` would let a trailing newline through, and a header cannot carry one.
        request.request_id = incoming if _WELL_FORMED_ID.fullmatch(incoming) else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


class ApiErrorMiddleware:
    """Refuses oversized API bodies before anything reads them, and renders exceptions that
    escape non-DRF code (database outages included) in the contract's envelope."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request.path):
            declared = request.META.get("CONTENT_LENGTH") or "0"
            # Digits only: int() would also take "-1", "+5", " 5" or "1_0".
            if not _CONTENT_LENGTH.fullmatch(declared):
                return error_response(
                    request, ApiError(ErrorCode.INVALID_REQUEST, "Malformed Content-Length.")
                )
            if int(declared) > settings.API_MAX_BODY_BYTES:
                return error_response(
                    request,
                    ApiError(
                        ErrorCode.PAYLOAD_TOO_LARGE,
                        f"The request body must be at most {settings.API_MAX_BODY_BYTES} bytes.",
                    ),
                )
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        return handle_uncaught(request, exception)
