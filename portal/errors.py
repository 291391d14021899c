"""The one domain error (`DomainError`), every error code of the contract with its HTTP status
and message, and the handlers that turn any failure (DRF's, Django's, ours) into
`{"errorCode", "message", "request_id", "ref"}`.
"""

from __future__ import annotations

import logging
import math
import re
from enum import StrEnum
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions

log = logging.getLogger("portal.errors")


class ErrorCode(StrEnum):
    """Every error code of the contract, with its HTTP status and its usual message (a
    refusal may say more). A code without both does not import."""

    status: int
    message: str

    def __new__(cls, code: str, status: int, message: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.message = message
        return member

    INVALID_REQUEST = "INVALID_REQUEST", 400, "The request is not valid."
    INVALID_AUTH_CODE = "INVALID_AUTH_CODE", 400, "Unknown authentication code."
    INVALID_API_KEY = "INVALID_API_KEY", 401, "Unknown API key."
    API_KEY_EXPIRED = "API_KEY_EXPIRED", 401, "This API key has expired."
    API_KEY_REVOKED = "API_KEY_REVOKED", 401, "This API key was revoked."
    INVALID_ACCESS_TOKEN = (  # a code, not a secret
        "INVALID_ACCESS_TOKEN",
        401,
        "Unknown, expired or void access token.",
    )
    INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE", 403, "This API key may not do this."
    APP_DISABLED = "APP_DISABLED", 403, "This app is disabled."
    USER_DISABLED = "USER_DISABLED", 403, "This user is deleted or disabled."
    USER_NOT_FOUND = "USER_NOT_FOUND", 404, "No such user in this app."
    NOT_FOUND = "NOT_FOUND", 404, "Not found."
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED", 405, "Method not allowed."
    AUTH_CODE_ALREADY_USED = "AUTH_CODE_ALREADY_USED", 409, "This authentication code was used."
    INSTALL_ID_CONFLICT = (
        "INSTALL_ID_CONFLICT",
        409,
        "This install id is already bound to another user.",
    )
    AUTH_CODE_EXPIRED = "AUTH_CODE_EXPIRED", 410, "This authentication code has expired."
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE", 413, "The request body is too large."
    UNSUPPORTED_MEDIA_TYPE = (
        "UNSUPPORTED_MEDIA_TYPE",
        415,
        "Send the body as JSON (Content-Type: application/json).",
    )
    RATE_LIMITED = "RATE_LIMITED", 429, "Too many requests."
    INTERNAL_ERROR = "INTERNAL_ERROR", 500, "Internal error; quote the request id to support."
    SERVICE_UNAVAILABLE = (
        "SERVICE_UNAVAILABLE",
        503,
        "The service is temporarily unavailable.",
    )


class DomainError(Exception):
    """The one exception of the portal's rules: a contract code and a message for whoever
    asked. Services, selectors and the API raise it; the API renders it as the envelope
    (`exception_handler`), the admin shows its message as a refusal, commands print it."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        fields: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        self.fields = fields
        self.headers = headers or {}
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return self.code.status


def _encodable(text: str) -> str:
    """Messages may quote the client's input (`"\\ud800" is not a valid choice.`). A lone
    surrogate is not Unicode text: UTF-8 cannot encode it and strict JSON decoders refuse its
    escape, so it is shown as the literal characters `\\ud800` instead."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(
    request: HttpRequest | None,
    code: ErrorCode,
    message: str,
    fields: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    request_id = getattr(request, "request_id", None)
    body: dict[str, Any] = {
        "errorCode": code.value,
        "message": _encodable(message),
        "request_id": request_id,
        "ref": request_id,  # the same: clients written for the platform we replace read `ref`
    }
    if fields:
        body["fields"] = {
            _encodable(name): [_encodable(text) for text in messages]
            for name, messages in fields.items()
        }
    return body


def error_response(request: HttpRequest | None, error: DomainError) -> JsonResponse:
    body = error_body(request, error.code, error.message, error.fields)
    response = JsonResponse(body, status=error.status)
    response.error_code = error.code  # for the request's log line and metrics
    for name, value in error.headers.items():
        response[name] = value
    return response


def _validation_fields(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Flatten DRF's nested error detail into `{"device.platform": ["…"]}`."""
    if isinstance(detail, list) and not any(isinstance(item, dict | list) for item in detail):
        return {prefix or "non_field_errors": [str(item) for item in detail]}
    fields: dict[str, list[str]] = {}
    items = detail.items() if isinstance(detail, dict) else enumerate(detail)
    for key, value in items:
        name = str(key) if not prefix else f"{prefix}.{key}"
        if key == "non_field_errors" and prefix:
            name = prefix
        fields.update(_validation_fields(value, name))
    return fields


def backing_service(exc: BaseException) -> str:
    """Which backing service an error came from, for the operator reading the log line."""
    return "redis" if isinstance(exc, RedisError) else "database"


# Credentials an error text may quote: the password of a URL (`postgres://user:pw@host`) and
# `password=…`-style pairs of a libpq DSN or a Redis error.
_URL_PASSWORD = re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@]*@", re.IGNORECASE)
_KEY_VALUE_SECRET = re.compile(
    r"(?P<keep>\b(?:password|passwd|pwd|secret|token|sslpassword)\s*=\s*)(?:'[^']*'|\"[^\"]*\"|\S+)",
    re.IGNORECASE,
)


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """An error's text fit for one log line: its first line only (libpq adds hints on the
    next ones), credentials masked, at most `limit` characters."""
    text = next(iter(str(exc).strip().splitlines()), "") or exc.__class__.__name__
    text = _URL_PASSWORD.sub(r"\g<keep>***@", text)
    text = _KEY_VALUE_SECRET.sub(r"\g<keep>***", text)
    return text[:limit]


def _domain_error_for(exc: Exception) -> DomainError | None:
    """Map every exception a view can raise to the contract's code; None means a bug (500)."""
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, exceptions.ValidationError):
        fields = _validation_fields(exc.detail)
        name, messages = next(iter(fields.items()))
        message = messages[0] if name == "non_field_errors" else f"{name}: {messages[0]}"
        return DomainError(ErrorCode.INVALID_REQUEST, message, fields=fields)
    if isinstance(exc, exceptions.ParseError):
        return DomainError(ErrorCode.INVALID_REQUEST, str(exc.detail))
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return DomainError(ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    if isinstance(exc, exceptions.MethodNotAllowed):
        return DomainError(ErrorCode.METHOD_NOT_ALLOWED, str(exc.detail))
    if isinstance(exc, exceptions.Throttled):
        wait = max(1, math.ceil(exc.wait or 1))
        return DomainError(
            ErrorCode.RATE_LIMITED,
            f"Too many requests; retry in {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )
    if isinstance(exc, exceptions.NotFound | Http404):
        return DomainError(ErrorCode.NOT_FOUND)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return DomainError(ErrorCode.INVALID_API_KEY, str(exc.detail))
    if isinstance(exc, exceptions.PermissionDenied):
        return DomainError(ErrorCode.INSUFFICIENT_SCOPE, str(exc.detail))
    if isinstance(exc, RequestDataTooBig):
        return DomainError(ErrorCode.PAYLOAD_TOO_LARGE)
    if isinstance(
        exc, OperationalError | InterfaceError | RedisConnectionError | RedisTimeoutError
    ):
        log.error(
            "%s unavailable: %s: %s",
            backing_service(exc),
            exc.__class__.__name__,
            describe_error(exc),
        )
        return DomainError(ErrorCode.SERVICE_UNAVAILABLE)
    if isinstance(exc, exceptions.APIException) and exc.status_code < 500:
        # Any other refusal DRF makes is still the client's doing, never an internal error.
        return DomainError(ErrorCode.INVALID_REQUEST, str(exc.detail))
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> JsonResponse | None:
    """DRF's exception handler: the envelope for every error a view raises. Always rendered as
    JSON, also by views whose own format is another (the schema's YAML, the docs' HTML)."""
    error = _domain_error_for(exc)
    if error is None:
        return None  # Django's handler500 answers with INTERNAL_ERROR and logs the traceback.
    request = context.get("request")
    return error_response(getattr(request, "_request", request), error)


def handle_uncaught(request: HttpRequest, exc: Exception) -> JsonResponse | None:
    """For exceptions outside DRF views (middleware, Django views): the same mapping."""
    error = _domain_error_for(exc)
    return None if error is None else error_response(request, error)
