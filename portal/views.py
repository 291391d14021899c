"""Health checks and the JSON error pages that replace Django's HTML ones on the API."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views import defaults
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.authorization import Public
from portal.errors import DomainError, ErrorCode, error_body, error_response
from portal.middleware import is_api_path
from portal.readiness import readiness

_Status = inline_serializer("HealthStatus", {"status": serializers.CharField()})
_Checks = inline_serializer(
    "ReadinessChecks",
    {
        "database": serializers.BooleanField(),
        "redis": serializers.BooleanField(
            required=False, help_text="Present when Redis is configured."
        ),
    },
)
_Ready = inline_serializer(
    "Ready",
    {
        "status": serializers.ChoiceField(
            ["ok", "degraded"],
            help_text="`degraded`: the database answers but Redis does not; the process "
            "still serves (rate limits let requests through, tasks wait for the sweeps).",
        ),
        "checks": _Checks,
    },
)
_NotReady = inline_serializer(
    "NotReady",
    {
        "errorCode": serializers.CharField(),
        "message": serializers.CharField(),
        "request_id": serializers.CharField(),
        "status": serializers.ChoiceField(["unavailable"]),
        "checks": _Checks,
    },
)


class HealthView(APIView):
    """Liveness: the process answers. Touches nothing else."""

    # Public: load balancers and orchestrators probe it without credentials, and it reveals
    # nothing but that the process runs.
    authentication_classes = []
    permission_classes = [Public]

    @extend_schema(tags=["operations"], responses={200: _Status}, auth=[])
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyView(APIView):
    """Readiness: the database answers. Redis is optional at request time, so without it the
    process is degraded, still ready: taking every web process out of the load balancer at
    once because of Redis would turn a partial outage into a total one. Answers within 2 s
    whatever the services do."""

    # Public: probed without credentials by load balancers; it reveals only whether the
    # database and Redis answer.
    authentication_classes = []
    permission_classes = [Public]

    @extend_schema(tags=["operations"], responses={200: _Ready, 503: _NotReady}, auth=[])
    def get(self, request: Request) -> Response:
        checks = readiness()
        if checks["database"]:
            status = "ok" if all(checks.values()) else "degraded"
            return Response({"status": status, "checks": checks})
        # A 5xx like any other: the error envelope, with the checks beside it.
        body = error_body(
            request._request,
            ErrorCode.SERVICE_UNAVAILABLE,
            "Not ready: the database does not answer.",
        )
        response = Response({**body, "status": "unavailable", "checks": checks}, status=503)
        # The readiness probe logged the failure once for the streak; without this Django adds
        # "Service Unavailable: /readyz" at every probe, once a second behind a load balancer.
        response._has_been_logged = True
        return response


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_path(request.path):
        return defaults.bad_request(request, exception)
    return error_response(request, DomainError(ErrorCode.INVALID_REQUEST, "Bad request."))


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_path(request.path):
        return defaults.page_not_found(request, exception)
    return error_response(
        request, DomainError(ErrorCode.NOT_FOUND, f"No such path: {request.path}")
    )


def server_error(request: HttpRequest) -> HttpResponse:
    if not is_api_path(request.path):
        return defaults.server_error(request)
    return error_response(request, DomainError(ErrorCode.INTERNAL_ERROR))
