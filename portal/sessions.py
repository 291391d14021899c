"""Sessions end after SESSION_COOKIE_AGE of idleness (12 hours) for the staff admin and the
customer console alike, without writing the session on every request
(SESSION_SAVE_EVERY_REQUEST would add an UPDATE to every page): a signed-in session is saved,
and so pushed back to a full SESSION_COOKIE_AGE, at most once every REFRESH_SECONDS of use.
A session therefore ends between SESSION_COOKIE_AGE - REFRESH_SECONDS and SESSION_COOKIE_AGE
after its last request."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse

REFRESH_SECONDS = 300
_SEEN = "portal_seen"


def mark_seen(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    """`user_logged_in` receiver: a session that was just signed in is fresh."""
    if request is not None and hasattr(request, "session"):
        request.session[_SEEN] = int(time.time())


class IdleSessionMiddleware:
    """After the session middleware: marks a signed-in session used when its mark is older than
    REFRESH_SECONDS, so the session middleware saves it with a new expiry. Requests without a
    session cookie (the APIs) are not looked at."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if (
            session is not None
            and settings.SESSION_COOKIE_NAME in request.COOKIES
            and session.session_key is not None
            and SESSION_KEY in session
        ):
            now = int(time.time())
            if now - session.get(_SEEN, 0) >= REFRESH_SECONDS:
                session[_SEEN] = now
        return response
