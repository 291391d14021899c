"""Authorization that denies by default.

Every DRF view gets `DenyUndeclared` unless it says otherwise (`REST_FRAMEWORK`'s
`DEFAULT_PERMISSION_CLASSES`), so a view whose author forgot to say who may call it refuses
everyone instead of serving everyone. A view says it in one of three ways: the customer base
(an API key holding the scope the view names for the method), the device base (a valid access
token), or `Public`, an opt-out that has to be written down next to the reason for it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny, BasePermission

from portal.errors import DomainError, ErrorCode

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


@functools.cache
def handled_methods(view_class: type[APIView]) -> frozenset[str]:
    """The HTTP methods (upper case) the view answers with a handler of its own: every other
    one DRF answers 405. HEAD is not listed: Django answers it with the GET handler, so it is
    authorised as GET. APIView's own OPTIONS only answers 405 here (no metadata class)."""
    # Imported here: DRF reads DEFAULT_PERMISSION_CLASSES, and so imports this module, while
    # rest_framework.views is still being imported.
    from rest_framework.views import APIView

    return frozenset(
        name.upper()
        for name in view_class.http_method_names
        if getattr(view_class, name, None) not in (None, getattr(APIView, name, None))
    )


def authorised_as(request: Request) -> str:
    """The method a request is authorised as: HEAD runs the GET handler, so it needs what GET
    needs."""
    return "GET" if request.method == "HEAD" else request.method


class Authentication(BaseAuthentication):
    """Base of the portal's authentication classes, whose refusals are DomainErrors. DRF
    marks a request as unauthenticated only when one of its own exceptions is raised; after
    ours, reading `request.user` again would run the check again (and count a failed key
    check twice). Subclasses implement `identify` instead of `authenticate`."""

    def authenticate(self, request: Request) -> tuple[object, object] | None:
        try:
            return self.identify(request)
        except DomainError:
            request._not_authenticated()
            raise

    def identify(self, request: Request) -> tuple[object, object] | None:
        raise NotImplementedError


class DenyUndeclared(BasePermission):
    """The default permission: a view that declares no authorization of its own refuses every
    request, whatever it presents."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        raise DomainError(
            ErrorCode.INSUFFICIENT_SCOPE, "This endpoint declares no authorization; refused."
        )


class Public(AllowAny):
    """An explicit opt-out of authorization. Every use says, beside it, why the view needs no
    credential (the credential is in the body, or the caller is a load balancer)."""
