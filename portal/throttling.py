"""Fixed-window rate limits on the shared cache (Redis in production).

DRF's own throttles keep a list of every request time per client and rewrite it on each
request, which grows with the rate; a counter per window costs two cache calls whatever the rate.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView


def parse_rate(rate: str) -> tuple[int, int]:
    """`"6000/min"` → (6000, 60). Periods: s, sec, m, min, h, hour, d, day."""
    count, _, period = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[:1].lower()]
    return int(count), seconds


class FixedWindowThrottle(BaseThrottle):
    rate_setting: str = ""
    scope: str = ""

    def ident(self, request: Request) -> str:
        raise NotImplementedError

    def _window(self, request: Request) -> tuple[str, int, int]:
        """The counter's cache key, the limit and the window's length in seconds."""
        limit, period = parse_rate(getattr(settings, self.rate_setting))
        now = time.time()
        window = int(now // period)
        self._wait = (window + 1) * period - now
        return f"throttle:{self.scope}:{self.ident(request)}:{window}", limit, period

    def hit(self, request: Request) -> bool:
        """Counts one request; False once the window's limit is exceeded."""
        key, limit, period = self._window(request)
        cache.add(key, 0, timeout=period + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr
            cache.set(key, 1, timeout=period + 1)
            count = 1
        return count <= limit

    def exhausted(self, request: Request) -> bool:
        """Whether the window's limit is used up, without counting this request."""
        key, limit, _ = self._window(request)
        return (cache.get(key) or 0) >= limit

    def allow_request(self, request: Request, view: APIView) -> bool:
        return self.hit(request)

    def wait(self) -> float:
        return self._wait


class ApiKeyThrottle(FixedWindowThrottle):
    """THROTTLE_API_KEY_RATE per API key."""

    rate_setting = "THROTTLE_API_KEY_RATE"
    scope = "key"

    def ident(self, request: Request) -> str:
        return request.auth.key_id


class ClientAddressThrottle(FixedWindowThrottle):
    """THROTTLE_SDK_RATE per client address on /sdk/..."""

    rate_setting = "THROTTLE_SDK_RATE"
    scope = "sdk"

    def ident(self, request: Request) -> str:
        return self.get_ident(request)


class AuthFailureThrottle(FixedWindowThrottle):
    """THROTTLE_AUTH_FAILURE_RATE failed API-key checks per client address: guessing keys is
    limited although the per-key limit cannot apply to a request without a valid key."""

    rate_setting = "THROTTLE_AUTH_FAILURE_RATE"
    scope = "auth-failure"

    def ident(self, request: Request) -> str:
        return self.get_ident(request)
