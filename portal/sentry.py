"""Error reports to Sentry, when `SENTRY_DSN` is set.

A report must help find the bug without carrying what the portal promises never to keep in
the clear: no API key, code or access token (they travel in `Authorization` and in bodies),
no customer external id (bodies, query strings, database error details). So: no default PII,
no request bodies, no cookies, no query strings, no local variables of stack frames (a view's
locals hold the parsed body), and PostgreSQL's `DETAIL:` lines (they quote the conflicting
row's values) cut from exception messages. Each report carries the request id as the tag
`request_id`, the id the client was told to quote to support.
"""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import ignore_logger

from portal import context

_DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
_DROPPED_REQUEST_FIELDS = ("cookies", "data", "query_string", "env")
_DROPPED_URL_DATA = ("http.query", "http.fragment")


def init_sentry(*, dsn: str, environment: str, traces_sample_rate: float) -> bool:
    """Starts the SDK with the Django and Celery integrations; does nothing without a DSN.
    Whether it started is returned for the caller's information."""
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        # No default PII: `send_default_pii` is left at its default, off (sentry-sdk 2.7x
        # deprecates passing it at all, in favour of an experimental `data_collection`).
        max_request_body_size="never",
        include_local_variables=False,
        # 0 turns tracing off entirely rather than making unsampled transactions.
        traces_sample_rate=traces_sample_rate or None,
        before_send=scrub_event,
        before_send_transaction=scrub_event,
    )
    # Log lines that are not bugs: a bad Host header is a scanner's, and the request summary
    # of a 5xx is already reported as the exception that caused it.
    ignore_logger("django.security.DisallowedHost")
    ignore_logger("portal.request")
    return True


# Paths that carry a secret in the path itself: the console's invitation links and Django's
# password-reset links. The secret part is replaced; the rest still tells which page it was.
_SECRET_IN_PATH = re.compile(
    r"(/console/(?:invitations|password-reset)/)(?!accept/|sent/|done/)[^?#]+"
)


def _strip_query(url: str) -> str:
    return _SECRET_IN_PATH.sub(r"\1[Filtered]/", url.split("?", 1)[0].split("#", 1)[0])


def _scrub_url_data(data: dict[str, Any] | None) -> None:
    if not data:
        return
    for key in _DROPPED_URL_DATA:
        data.pop(key, None)
    if isinstance(data.get("url"), str):
        data["url"] = _strip_query(data["url"])


def scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """before_send: removes what may carry a secret or an external id, adds the request id.
    It runs where the error was captured, so the request's (or task's) context is current."""
    request = event.get("request")
    if request:
        for field in _DROPPED_REQUEST_FIELDS:
            request.pop(field, None)
        if isinstance(request.get("headers"), dict):
            request["headers"] = {
                name: value
                for name, value in request["headers"].items()
                if name.lower() not in _DROPPED_HEADERS
            }
        if isinstance(request.get("url"), str):
            request["url"] = _strip_query(request["url"])
    for exception in (event.get("exception") or {}).get("values") or []:
        if isinstance(exception.get("value"), str):
            exception["value"] = exception["value"].split("\nDETAIL:", 1)[0]
    for crumb in (event.get("breadcrumbs") or {}).get("values") or []:
        _scrub_url_data(crumb.get("data"))
    for span in event.get("spans") or []:
        _scrub_url_data(span.get("data"))
        if isinstance(span.get("description"), str) and span.get("op") == "http.client":
            span["description"] = _strip_query(span["description"])
    request_id = context.request_id.get()
    if request_id is not None:
        event.setdefault("tags", {})["request_id"] = request_id
    return event
