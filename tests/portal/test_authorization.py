"""Authorization denies by default: every URL of the portal is pinned to who may call it, a view
that does not say so refuses everyone (or does not import), and each customer endpoint
refuses a key without its scope."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from accounts import crypto
from accounts.api import AuthCodeView, CustomerApiView, DeletionStatusView
from accounts.authentication import ApiKeyAuthentication, HasScope, named_scopes
from accounts.models import Scope
from devices.api import (
    DeviceApiView,
    RedeemView,
    ResetView,
    SdkApiView,
    StatusView,
    TokenView,
    UserDetailView,
    UserLookupView,
)
from devices.authentication import AccessTokenAuthentication, HasAccessToken
from portal.authorization import Public, handled_methods
from portal.metrics import metrics_view
from portal.throttling import ApiKeyThrottle, ClientAddressThrottle
from portal.views import HealthView, ReadyView
from tests.factories import ApiKeyFactory, DeviceFactory, LinkedUserFactory
from tests.portal.test_errors import assert_envelope, rows


class Access(NamedTuple):
    """How a view is authorised: its authentication, permission and throttle classes."""

    authentication: tuple[type, ...]
    permissions: tuple[type, ...]
    throttles: tuple[type, ...]


API_KEY = Access((ApiKeyAuthentication,), (HasScope,), (ApiKeyThrottle,))
ACCESS_TOKEN = Access((AccessTokenAuthentication,), (HasAccessToken,), (ClientAddressThrottle,))
# Public on purpose, each for the reason written beside the view (or the setting).
PUBLIC_SDK = Access((), (Public,), (ClientAddressThrottle,))
PUBLIC = Access((), (Public,), ())
# A plain Django view that checks its own credential (METRICS_TOKEN, tests/portal/test_metrics.py).
OWN_CHECK = None


class Row(NamedTuple):
    view: type[APIView] | Callable[..., Any]
    access: Access | None
    # each method the view handles → the scope it needs (or a tuple of which any will do)
    methods: dict[str, str | tuple[str, ...] | None]


# Every URL of portal.urls but the admin and the console (whose pages have their own table,
# tests/console/test_isolation.py). A new URL fails test_every_url_is_in_the_table until
# it is added here, with the authorization it should have.
TABLE: dict[str, Row] = {
    "users/auth-code": Row(AuthCodeView, API_KEY, {"POST": Scope.USER_LINK}),
    "users": Row(UserLookupView, API_KEY, {"GET": Scope.USER_READ}),
    "users/<str:user_id>": Row(
        UserDetailView, API_KEY, {"GET": Scope.USER_READ, "DELETE": Scope.USER_DELETE}
    ),
    "users/deletions/<str:request_id>": Row(
        DeletionStatusView, API_KEY, {"GET": (Scope.USER_DELETE, Scope.USER_READ)}
    ),
    "sdk/users": Row(RedeemView, PUBLIC_SDK, {"POST": None}),
    "sdk/status": Row(StatusView, ACCESS_TOKEN, {"GET": None}),
    "sdk/token": Row(TokenView, ACCESS_TOKEN, {"POST": None}),
    "sdk/reset": Row(ResetView, ACCESS_TOKEN, {"POST": None}),
    "healthz": Row(HealthView, PUBLIC, {"GET": None}),
    "readyz": Row(ReadyView, PUBLIC, {"GET": None}),
    "metrics": Row(metrics_view, OWN_CHECK, {}),
    "api/schema/": Row(SpectacularAPIView, PUBLIC, {"GET": None}),
    "api/docs/": Row(SpectacularSwaggerView, PUBLIC, {"GET": None}),
}

USER_ID = "5a18fc4b0962209e0000000d"


def _urls(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, Callable[..., Any]]]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if pattern.namespace not in {"admin", "console"}:
                yield from _urls(pattern.url_patterns, route)
        else:
            assert isinstance(pattern, URLPattern)
            yield route, pattern.callback


def _found() -> dict[str, Row]:
    found = {}
    for route, callback in _urls(get_resolver("portal.urls").url_patterns):
        view_class = getattr(callback, "cls", None)
        if view_class is None:  # not a DRF view
            found[route] = Row(callback, OWN_CHECK, {})
            continue
        view = view_class(**callback.initkwargs)
        access = Access(
            tuple(type(each) for each in view.get_authenticators()),
            tuple(type(each) for each in view.get_permissions()),
            tuple(type(each) for each in view.get_throttles()),
        )
        scopes = getattr(view, "required_scopes", {})
        methods = {method: scopes.get(method) for method in handled_methods(view_class)}
        found[route] = Row(view_class, access, methods)
    return found


def test_every_url_is_in_the_table() -> None:
    assert set(_found()) == set(TABLE)


@pytest.mark.parametrize("route", TABLE)
def test_each_url_is_authorised_as_the_table_says(route: str) -> None:
    assert _found()[route] == TABLE[route]


def _path(route: str) -> str:
    return "/" + route.replace("<str:user_id>", USER_ID).replace("<str:request_id>", USER_ID)


CUSTOMER_CALLS = [
    (route, method, scope)
    for route, row in TABLE.items()
    if row.access == API_KEY
    for method, scope in row.methods.items()
]
GUARDED_CALLS = [
    (route, method, row.access)
    for route, row in TABLE.items()
    if row.access in {API_KEY, ACCESS_TOKEN}
    for method in row.methods
]


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method", "access"), GUARDED_CALLS)
def test_without_a_credential_every_guarded_call_is_refused(api, route, method, access) -> None:
    before = rows()
    response = api.generic(method, _path(route), "{}", content_type="application/json")
    code = "INVALID_API_KEY" if access == API_KEY else "INVALID_ACCESS_TOKEN"
    assert_envelope(response, 401, code)
    assert rows() == before


@pytest.mark.parametrize(("route", "method", "scope"), CUSTOMER_CALLS)
def test_a_key_lacking_the_scope_gets_insufficient_scope(api, app, route, method, scope) -> None:
    user = LinkedUserFactory(app=app, external_id="alice")
    needed = named_scopes(scope)
    api_key = ApiKeyFactory(app=app, scopes=[s for s in Scope.values if s not in needed])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    before = rows()
    path = _path(route).replace(USER_ID, user.user_id) + "?external_id=alice"
    response = api.generic(method, path, '{"external_id": "alice"}', "application/json")
    body = assert_envelope(response, 403, "INSUFFICIENT_SCOPE")
    either = " or ".join(f"'{each}'" for each in needed)
    assert body["message"] == f"This API key lacks the scope {either}."
    assert rows() == before


@pytest.mark.parametrize("path", ["/users?external_id=alice", "/users/{user_id}"])
def test_head_needs_the_scope_of_get(api, app, path) -> None:
    """HEAD runs the GET handler: without `user.read` it must not tell whether a user exists."""
    user = LinkedUserFactory(app=app, external_id="alice")
    api_key = ApiKeyFactory(app=app, scopes=[Scope.USER_LINK])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    response = api.head(path.format(user_id=user.user_id))
    assert response.status_code == 403
    assert response["X-Request-ID"]
    reader = ApiKeyFactory(app=app, scopes=[Scope.USER_READ])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {reader.full_key}")
    assert api.head(path.format(user_id=user.user_id)).status_code == 200


def test_a_method_a_customer_view_does_not_handle_is_405_after_the_key_check(api, app) -> None:
    assert_envelope(api.put("/users/auth-code"), 401, "INVALID_API_KEY")
    api_key = ApiKeyFactory(app=app, scopes=[Scope.USER_READ])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    assert_envelope(api.put("/users/auth-code"), 405, "METHOD_NOT_ALLOWED")


def test_a_customer_view_without_a_scope_for_a_method_does_not_import() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"handles DELETE, PUT but names no scope"):

        class _Unscoped(CustomerApiView):
            required_scopes = {"GET": Scope.USER_READ}

            def get(self, request: Request) -> Response:
                return Response({})

            def put(self, request: Request) -> Response:
                return Response({})

            def delete(self, request: Request) -> Response:
                return Response({})


def test_a_customer_view_naming_an_unknown_scope_does_not_import() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"unknown scopes \['user\.write'\]"):

        class _Misspelt(CustomerApiView):
            required_scopes = {"POST": "user.write"}

            def post(self, request: Request) -> Response:
                return Response({})


def test_a_customer_base_of_its_own_without_handlers_imports() -> None:
    class _Base(CustomerApiView):
        pass

    class _Concrete(_Base):
        required_scopes = {"GET": Scope.USER_READ}

        def get(self, request: Request) -> Response:
            return Response({})

    assert handled_methods(_Concrete) == {"GET"}


def test_an_sdk_view_on_the_bare_sdk_base_does_not_import() -> None:
    """The mistake of old: inheriting the SDK base instead of the device base."""
    with pytest.raises(ImproperlyConfigured, match=r"declares no permission_classes"):

        class _Unauthenticated(SdkApiView):
            def get(self, request: Request) -> Response:
                return Response({})

    class _Device(DeviceApiView):
        def get(self, request: Request) -> Response:
            return Response({})

    assert _Device().get_permissions()[0].__class__ is HasAccessToken


def _answer(view: type[APIView], **headers: str) -> tuple[HttpResponse, dict[str, Any]]:
    """A view's error answer to a GET, called directly: these views are in no URLconf."""
    response = view.as_view()(APIRequestFactory().get("/anywhere", **headers))
    return response, json.loads(response.content)


@pytest.mark.django_db
def test_a_view_that_declares_nothing_is_refused() -> None:
    class _Undeclared(APIView):
        def get(self, request: Request) -> Response:
            return Response({"secret": "data"})

    response, body = _answer(_Undeclared)
    assert response.status_code == 403
    assert body["errorCode"] == "INSUFFICIENT_SCOPE"
    assert "secret" not in body


def test_scope_checking_refuses_a_handled_method_that_names_no_scope(app) -> None:
    """Outside the customer base nothing checks the class at import; the request is refused."""

    class _Unscoped(APIView):
        authentication_classes = [ApiKeyAuthentication]
        permission_classes = [HasScope]

        def get(self, request: Request) -> Response:
            return Response({})

    api_key = ApiKeyFactory(app=app)
    response, body = _answer(_Unscoped, HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    assert response.status_code == 403
    assert body["errorCode"] == "INSUFFICIENT_SCOPE"
    assert body["message"] == "No scope grants GET here."


def test_scope_checking_without_an_api_key_refuses(app) -> None:
    """Paired with the access token's authentication, a device is no key: 401, not a crash."""

    class _Mismatched(APIView):
        authentication_classes = [AccessTokenAuthentication]
        permission_classes = [HasScope]
        required_scopes = {"GET": Scope.USER_READ}

        def get(self, request: Request) -> Response:
            return Response({})

    token = crypto.new_secret()
    DeviceFactory(
        user=LinkedUserFactory(app=app),
        access_token_digest=crypto.digest(token),
        access_token_expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    response, body = _answer(_Mismatched, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert body["errorCode"] == "INVALID_API_KEY"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_the_device_permission_refuses_a_request_without_a_device(app) -> None:
    class _Mismatched(APIView):
        authentication_classes = [ApiKeyAuthentication]
        permission_classes = [HasAccessToken]

        def get(self, request: Request) -> Response:
            return Response({})

    api_key = ApiKeyFactory(app=app)
    response, body = _answer(_Mismatched, HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    assert response.status_code == 401
    assert body["errorCode"] == "INVALID_ACCESS_TOKEN"
    assert response["WWW-Authenticate"] == 'Bearer realm="sdk"'


@pytest.mark.django_db
def test_a_refused_credential_is_checked_once_however_often_the_request_is_asked(
    api_key, monkeypatch
) -> None:
    """After a refusal the DRF request is unauthenticated: reading `request.user` again (a
    middleware, an error reporter) neither checks the key again nor counts a second failure."""
    from accounts import authentication
    from portal.errors import DomainError

    counted = []
    monkeypatch.setattr(
        authentication, "count_failed_key_check", lambda request, **kw: counted.append(kw)
    )
    wrong = f"Bearer {api_key.key_id}.{'x' * 43}"
    request = Request(
        APIRequestFactory().get("/users/x", HTTP_AUTHORIZATION=wrong),
        authenticators=[authentication.ApiKeyAuthentication()],
    )
    with pytest.raises(DomainError):
        request.user  # noqa: B018
    assert (request.user, request.auth) == (None, None)  # unauthenticated, no second check
    assert counted == [{"existing_key_id": api_key.key_id}]
