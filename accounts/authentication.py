"""API-key authentication and scope checks for the customer API."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.models import ApiKey
from portal import context
from portal.errors import ApiError, ErrorCode
from portal.throttling import count_failed_key_check


def bearer_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key_id>.<secret>`; every customer endpoint needs it."""

    def authenticate(self, request: Request) -> tuple[None, ApiKey]:
        raw = bearer_token(request)
        if raw is None:
            raise ApiError(
                ErrorCode.INVALID_API_KEY,
                "Send the API key as 'Authorization: Bearer <key_id>.<secret>'.",
                headers=selectors.CHALLENGE,
            )
        try:
            api_key = selectors.api_key_for(raw)
        except selectors.KeyCheckFailed as failure:
            # Only failures are limited, so a valid key is never refused for them.
            count_failed_key_check(request, existing_key_id=failure.existing_key_id)
            raise
        context.tag_request(app_id=api_key.app.app_id, key_id=api_key.key_id)
        services.record_api_key_use(api_key=api_key)
        return (None, api_key)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "<key_id>.<secret>",
            "description": "An API key of the app, with the scope the endpoint names.",
        }


class HasScope(BasePermission):
    """The key must hold the scope the view names for the method (`required_scopes`). A method
    the view does not name is let through, to be answered 405 by the view."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        scope = view.required_scopes.get(request.method)
        if scope is not None and scope not in request.auth.scopes:
            raise ApiError(ErrorCode.INSUFFICIENT_SCOPE, f"This API key lacks the scope '{scope}'.")
        return True
