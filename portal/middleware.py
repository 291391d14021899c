"""Request plumbing that applies to every answer: request ids, early 413s, the error envelope
for failures raised outside DRF views."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from portal import context, metrics
from portal.errors import DomainError, ErrorCode, error_response, handle_uncaught

request_log = logging.getLogger("portal.request")

_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTENT_LENGTH = re.compile(r"[0-9]+")


def is_api_path(path: str) -> bool:
    return not path.startswith(("/admin/", "/console/", "/static/"))


class RequestIdMiddleware:
    """Gives each request an id (echoing a well-formed incoming `X-Request-ID`), returns it in
    the `X-Request-ID` header of every answer, stamps it on every log line written meanwhile
    (and on the tasks the request enqueues), and ends with one summary line per request, so
    logs, metrics and support tickets meet.

    The summary names the route pattern (`users/<str:user_id>`), never the path or query
    string: those carry customer external ids."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        # fullmatch: `$` would let a trailing newline through, and a header cannot carry one.
        request.request_id = incoming if _WELL_FORMED_ID.fullmatch(incoming) else uuid.uuid4().hex
        id_token = context.request_id.set(request.request_id)
        tags: dict[str, str] = {}
        tags_token = context.request_tags.set(tags)
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request.request_id
            _log_summary(request, response, tags, started)
            return response
        finally:
            context.request_tags.reset(tags_token)
            context.request_id.reset(id_token)


def _log_summary(
    request: HttpRequest, response: HttpResponse, tags: dict[str, str], started: float
) -> None:
    status = response.status_code
    level = logging.ERROR if status >= 500 else logging.INFO
    if not request_log.isEnabledFor(level):
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    route = metrics.route_of(request, status)
    fields: dict[str, object] = {
        "method": request.method,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "app_id": tags.get("app_id"),
        "key_id": tags.get("key_id"),
        "errorCode": getattr(response, "error_code", None),
    }
    request_log.log(
        level, "%s %s %s %.1fms", request.method, route, status, duration_ms, extra=fields
    )


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
                    request, DomainError(ErrorCode.INVALID_REQUEST, "Malformed Content-Length.")
                )
            if int(declared) > settings.API_MAX_BODY_BYTES:
                return error_response(
                    request,
                    DomainError(
                        ErrorCode.PAYLOAD_TOO_LARGE,
                        f"The request body must be at most {settings.API_MAX_BODY_BYTES} bytes.",
                    ),
                )
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        return handle_uncaught(request, exception)
