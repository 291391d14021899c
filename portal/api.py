"""The base of the portal's DRF views."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from rest_framework.views import APIView


@cache
def _instances(classes: tuple[type, ...]) -> tuple[Any, ...]:
    return tuple(cls() for cls in classes)


@cache
def _instance(cls: type) -> Any:
    return cls()


_HEADERS: dict[type, dict[str, str]] = {}


class ApiView(APIView):
    """DRF's APIView, with what DRF builds anew for every request built once per view class:
    the instances of its authentication, permission, throttle, parser and renderer classes,
    its content negotiator and its `Allow` header (together ~10 % of a status request's CPU).
    Those classes keep no state between calls (the portal's own and DRF's parsers and
    renderers): any that did could not be listed here; a test checks the ones in use."""

    def get_authenticators(self) -> Sequence[Any]:
        return _instances(tuple(self.authentication_classes))

    def get_permissions(self) -> Sequence[Any]:
        return _instances(tuple(self.permission_classes))

    def get_throttles(self) -> Sequence[Any]:
        return _instances(tuple(self.throttle_classes))

    def get_parsers(self) -> Sequence[Any]:
        return _instances(tuple(self.parser_classes))

    def get_renderers(self) -> Sequence[Any]:
        return _instances(tuple(self.renderer_classes))

    def get_content_negotiator(self) -> Any:
        return _instance(self.content_negotiation_class)

    @property
    def default_response_headers(self) -> dict[str, str]:
        headers = _HEADERS.get(type(self))
        if headers is None:
            headers = _HEADERS[type(self)] = APIView.default_response_headers.fget(self)
        return dict(headers)  # DRF pops from it
