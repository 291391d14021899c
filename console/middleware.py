"""Headers of every console answer. Django 5.2 has no Content-Security-Policy of its own, so
this one sends it: scripts and styles from the portal's own static files only, never inline;
no plugin, no framing, forms only to the portal. The console's pages are never cached: some
show a secret once (a recovery code, an invitation link) and the next person at a shared
computer must not find it with the back button."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PREFIX = "/console/"


class ConsoleHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(PREFIX):
            response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            response["X-Frame-Options"] = "DENY"
            add_never_cache_headers(response)
        return response
