"""API-key authentication and scope checks for the customer API."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.models import ApiKey
from portal import context
from portal.authorization import Authentication, authorised_as, handled_methods
from portal.errors import DomainError, ErrorCode
from portal.throttling import count_failed_key_check

_SEND_THE_KEY = "Send the API key as 'Authorization: Bearer <key_id>.<secret>'."


def bearer_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


class ApiKeyAuthentication(Authentication):
    """`Authorization: Bearer <key_id>.<secret>`; every customer endpoint needs it."""

    def identify(self, request: Request) -> tuple[None, ApiKey]:
        raw = bearer_token(request)
        if raw is None:
            raise DomainError(
                ErrorCode.INVALID_API_KEY,
                _SEND_THE_KEY,
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
    """The API key must hold a scope the view names for the method (`required_scopes`; HEAD
    as GET, whose handler it runs). A method the view has no handler for passes, so that the
    view answers it 405. A method it handles without naming a scope is refused: no key can hold
    a scope nobody named (the customer base refuses such a class at import already; this
    covers a view that uses the permission without the base)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not isinstance(request.auth, ApiKey):
            # Only when paired with other authentication than ApiKeyAuthentication: no key, no way.
            raise DomainError(ErrorCode.INVALID_API_KEY, _SEND_THE_KEY, headers=selectors.CHALLENGE)
        method = authorised_as(request)
        if method not in handled_methods(type(view)):
            return True
        scopes = named_scopes(getattr(view, "required_scopes", {}).get(method))
        if not scopes:
            raise DomainError(ErrorCode.INSUFFICIENT_SCOPE, f"No scope grants {method} here.")
        if not set(scopes) & set(request.auth.scopes):
            either = " or ".join(f"'{scope}'" for scope in scopes)
            raise DomainError(
                ErrorCode.INSUFFICIENT_SCOPE, f"This API key lacks the scope {either}."
            )
        return True


def named_scopes(named: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """A `required_scopes` entry as the scopes any one of which grants the method: one scope,
    or a tuple of them (a read that `user.read` and `user.delete` keys may both make)."""
    if named is None:
        return ()
    return (named,) if isinstance(named, str) else tuple(named)
