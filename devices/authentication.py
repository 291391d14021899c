"""Access-token authentication for the SDK's own calls."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts import crypto
from accounts.authentication import bearer_token
from accounts.models import App, LinkedUser
from devices.models import Device
from portal import context
from portal.authorization import Authentication
from portal.db import rows
from portal.errors import DomainError, ErrorCode

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sdk"'}


def _invalid_token() -> DomainError:
    return DomainError(ErrorCode.INVALID_ACCESS_TOKEN, headers=_CHALLENGE)


_BY_TOKEN_DIGEST = f"""
    SELECT {rows.columns(Device, "d")}, {rows.columns(LinkedUser, "u")}, {rows.columns(App, "a")}
    FROM devices_device d
    JOIN accounts_linkeduser u ON u.id = d.user_id
    JOIN accounts_app a ON a.id = d.app_id
    WHERE d.access_token_digest = %s
"""  # noqa: S608 (column names from the models, the digest bound)


def _device_by_token_digest(digest: str) -> Device | None:
    """The device holding the token, with its user and app: one statement, no ORM compile."""
    row = rows.fetch_one(_BY_TOKEN_DIGEST, [digest])
    if row is None:
        return None
    device_end = len(rows.fields_of(Device))
    user_end = device_end + len(rows.fields_of(LinkedUser))
    device = rows.instance(Device, row[:device_end])
    device.user = rows.instance(LinkedUser, row[device_end:user_end])
    device.app = device.user.app = rows.instance(App, row[user_end:])
    return device


class AccessTokenAuthentication(Authentication):
    """`Authorization: Bearer <access token>`: one indexed lookup by digest, with the user and
    app joined. An inactive device's token still works, so the SDK can learn why."""

    def identify(self, request: Request) -> tuple[None, Device]:
        token = bearer_token(request)
        device = None
        if token is not None and len(token) <= 128:
            device = _device_by_token_digest(crypto.digest(token))
        if device is None or device.access_token_expires_at <= timezone.now():
            raise _invalid_token()
        context.tag_request(app_id=device.app.app_id)
        if not device.app.is_active:
            raise DomainError(ErrorCode.APP_DISABLED)
        if not device.user.is_usable:
            raise DomainError(ErrorCode.USER_DISABLED)
        return (None, device)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="sdk"'


class HasAccessToken(BasePermission):
    """The request was authenticated by a device's access token. AccessTokenAuthentication
    already refuses every other request; this says so where the permissions are read, and
    keeps refusing should the view's authentication ever be changed to something else."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not isinstance(request.auth, Device):
            raise _invalid_token()
        return True


class AccessTokenScheme(OpenApiAuthenticationExtension):
    target_class = AccessTokenAuthentication
    name = "AccessToken"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The access token a redemption (POST /sdk/users) returned.",
        }
