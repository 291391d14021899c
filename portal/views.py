"""Health checks and the JSON error pages that replace Django's HTML ones on the API."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.errors import ApiError, ErrorCode, error_body, error_response
from portal.middleware import is_api_path

log = logging.getLogger("portal.health")

_Status = inline_serializer("HealthStatus", {"status": serializers.CharField()})
_NotReady = inline_serializer(
    "NotReady",
    {
        "errorCode": serializers.CharField(),
        "message": serializers.CharField(),
        "request_id": serializers.CharField(),
        "status": serializers.CharField(),
        "checks": serializers.DictField(child=serializers.BooleanField()),
    },
)


class HealthView(APIView):
    """Liveness: the process answers. Touches nothing else."""

    @extend_schema(tags=["operations"], responses={200: _Status}, auth=[])
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyView(APIView):
    """Readiness: the database (and Redis, when configured) answer."""

    @extend_schema(tags=["operations"], responses={200: _Status, 503: _NotReady}, auth=[])
    def get(self, request: Request) -> Response:
        checks = {"database": _database_ok()}
        if settings.REDIS_URL:
            checks["redis"] = _redis_ok()
        if all(checks.values()):
            return Response({"status": "ok", "checks": checks})
        # A 5xx like any other: the error envelope, with the failed checks beside it.
        failed = ", ".join(name for name, ok in checks.items() if not ok)
        body = error_body(
            request._request, ErrorCode.SERVICE_UNAVAILABLE, f"Not ready: {failed} does not answer."
        )
        return Response({**body, "status": "unavailable", "checks": checks}, status=503)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        log.warning("readiness: database does not answer", exc_info=True)
        return False


def _redis_ok() -> bool:
    from django.core.cache import cache

    try:
        cache.get("readyz")
        return True
    except Exception:
        log.warning("readiness: redis does not answer", exc_info=True)
        return False


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_path(request.path):
        return defaults.bad_request(request, exception)
    return error_response(request, ApiError(ErrorCode.INVALID_REQUEST, "Bad request."))


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_path(request.path):
        return defaults.page_not_found(request, exception)
    return error_response(request, ApiError(ErrorCode.NOT_FOUND, f"No such path: {request.path}"))


def server_error(request: HttpRequest) -> HttpResponse:
    if not is_api_path(request.path):
        return defaults.server_error(request)
    return JsonResponse(
        {
            "errorCode": ErrorCode.INTERNAL_ERROR.value,
            "message": "Internal error; quote the request id to support.",
            "request_id": getattr(request, "request_id", None),
        },
        status=500,
    )
