"""Fixed-window rate limits, counted in Redis (or in process memory without `REDIS_URL`).

A count in Redis costs one round trip: `INCRBY` and `EXPIRE` in one pipeline, on a client of
our own that is built once per process (Django's cache builds a new client for every call
and needs two calls per request).

The limits on every request (per API key, per client address) are batched: far from its
limit, a process sends a counter to Redis with the requests it admitted since its last round
trip once `FLUSH_SECONDS` (100 ms) have passed or it holds `HOLD_BACK` (1 %) of the limit,
instead of once per request (which cost a fifth of a status call's time). From `EXACT_FROM`
(80 %) of the limit on, as last seen in Redis, every request goes there. So a client can get
past its limit only by what the other processes hold back unsent: at most 1 % of the limit
each. The limits on failed key checks, which guard secrets, are always counted at once.

The limits only protect, so they fail open: when Redis errs or does not answer within
`THROTTLE_REDIS_TIMEOUT` (100 ms), the request goes on, a metric counts it and a warning is
logged at most once a minute per process. After a failure the store is left alone for a second,
so a hung Redis costs one timeout per second per process, not one per request.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from portal import metrics
from portal.errors import DomainError, ErrorCode, describe_error

log = logging.getLogger("portal.throttling")

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PERIOD_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
_BACKOFF_SECONDS = 1.0
_WARNING_INTERVAL_SECONDS = 60.0
FLUSH_SECONDS = 0.1
EXACT_FROM = 0.8
HOLD_BACK = 0.01


@functools.lru_cache(maxsize=64)
def parse_rate(rate: str) -> tuple[int, int]:
    """`"6000/min"` → (6000, 60). Periods: s, sec, m, min, h, hour, d, day."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[:1].lower()]


class Counters(Protocol):
    def hit(self, key: str, period: int, amount: int = 1) -> int:
        """Adds `amount` to the window's counter, which lives `period` seconds; the new count."""


class RedisCounters:
    def __init__(self, url: str, timeout: float) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
            retry=None,
            health_check_interval=0,
        )

    def hit(self, key: str, period: int, amount: int = 1) -> int:
        # The key names its window, so pushing its expiry on at each hit changes no count;
        # plain EXPIRE works on every Redis (EXPIRE … NX needs 7.0).
        pipe = self._client.pipeline(transaction=False)
        pipe.incrby(key, amount)
        pipe.expire(key, period + 1)
        count, _ = pipe.execute()
        return count


class LocalCounters:
    """One process's counters, for the embedded run without Redis (and the tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}
        self._pruned_at = 0.0

    def hit(self, key: str, period: int, amount: int = 1) -> int:
        now = time.monotonic()
        with self._lock:
            if now - self._pruned_at > 1.0:  # drop ended windows, at most once a second
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
                self._pruned_at = now
            count, expires = self._counts.get(key, (0, 0.0))
            count = count + amount if expires > now else amount
            self._counts[key] = (count, expires if expires > now else now + period + 1)
            return count


@dataclass
class _Batch:
    """A counter's requests admitted by this process since its last round trip."""

    known: int
    """The window's count in Redis (all processes) at the last round trip."""
    pending: int
    flushed_at: float
    expires_at: float


class _Store:
    """The counters of this process, with the batching and the fail-open bookkeeping."""

    def __init__(self) -> None:
        self._counters: Counters | None = None
        self._lock = threading.Lock()
        self._skip_until = 0.0
        self._warned_at = -math.inf
        self._batches: dict[str, _Batch] = {}
        self._pruned_at = 0.0

    def reset(self) -> None:
        with self._lock:
            self._counters, self._skip_until, self._warned_at = None, 0.0, -math.inf
            self._batches, self._pruned_at = {}, 0.0

    def batched_hit(self, key: str, period: int, limit_name: str, limit: int) -> int | None:
        """`hit`, batched while the counter is far from `limit` (see the module's doc); the
        count as this process knows it."""
        if not isinstance(self.counters(), RedisCounters):
            return self.hit(key, period, limit_name)  # in process memory: nothing to save
        now = time.monotonic()
        with self._lock:
            if now - self._pruned_at > 1.0:  # drop ended windows, at most once a second
                self._batches = {k: b for k, b in self._batches.items() if b.expires_at > now}
                self._pruned_at = now
            batch = self._batches.get(key)
            if (
                batch is not None
                and now - batch.flushed_at < FLUSH_SECONDS
                and batch.pending + 1 < HOLD_BACK * limit
                and batch.known + batch.pending + 1 < EXACT_FROM * limit
            ):
                batch.pending += 1
                return batch.known + batch.pending
            amount = 1 + (batch.pending if batch is not None else 0)
            if batch is not None:
                batch.pending, batch.flushed_at = 0, now  # others batch on while this flushes
        count = self.hit(key, period, limit_name, amount)
        with self._lock:
            if count is None:
                lost = self._batches.pop(key, None)
                if lost is not None and lost.pending:  # batched meanwhile, never sent
                    metrics.THROTTLE_FAIL_OPEN.labels(limit=limit_name).inc(lost.pending)
                return None
            batch = self._batches.get(key)
            if batch is None:
                self._batches[key] = _Batch(count, 0, now, now + period + 1)
                return count
            batch.known = max(batch.known, count)
            return count + batch.pending

    def counters(self) -> Counters:
        counters = self._counters
        if counters is None:
            with self._lock:
                if self._counters is None:
                    url = settings.REDIS_URL
                    self._counters = (
                        RedisCounters(url, settings.THROTTLE_REDIS_TIMEOUT)
                        if url
                        else LocalCounters()
                    )
                counters = self._counters
        return counters

    def hit(self, key: str, period: int, limit_name: str, amount: int = 1) -> int | None:
        """The new count, or None when the store failed (the caller lets the request go;
        the `amount` requests it carried count as let through uncounted)."""
        now = time.monotonic()
        if now < self._skip_until:
            metrics.THROTTLE_FAIL_OPEN.labels(limit=limit_name).inc(amount)
            return None
        try:
            return self.counters().hit(key, period, amount)
        except redis.RedisError as exc:
            self._skip_until = now + _BACKOFF_SECONDS
            metrics.THROTTLE_FAIL_OPEN.labels(limit=limit_name).inc(amount)
            if now - self._warned_at >= _WARNING_INTERVAL_SECONDS:
                self._warned_at = now
                log.warning(
                    "rate limits are not enforced: redis failed (%s: %s); letting requests "
                    "through (warned at most once a minute)",
                    exc.__class__.__name__,
                    describe_error(exc),
                )
            return None


store = _Store()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: object) -> None:
    if setting in {"REDIS_URL", "THROTTLE_REDIS_TIMEOUT"}:
        store.reset()


@dataclass(frozen=True)
class Limit:
    """One rate limit: its name (in 429 answers and metrics), its rate setting and what it
    counts per."""

    name: str
    rate_setting: str
    per: str
    batched: bool = False
    """Counted in Redis in batches while far from the limit (see the module's doc)."""

    def hit(self, ident: str) -> None:
        """Counts one request against `ident`; raises RATE_LIMITED past the limit."""
        limit, period = parse_rate(getattr(settings, self.rate_setting))
        now = time.time()
        window = int(now // period)
        key = f"portal:throttle:{self.name}:{ident}:{window}"
        if self.batched:
            count = store.batched_hit(key, period, self.name, limit)
        else:
            count = store.hit(key, period, self.name)
        if count is not None and count > limit:
            wait = max(1, math.ceil((window + 1) * period - now))
            metrics.THROTTLED.labels(limit=self.name).inc()
            raise DomainError(
                ErrorCode.RATE_LIMITED,
                f"Rate limit '{self.name}' exceeded ({limit} per {_PERIOD_NAMES[period]} "
                f"{self.per}); retry in {wait} seconds.",
                headers={"Retry-After": str(wait)},
            )


API_KEY = Limit("api_key", "THROTTLE_API_KEY_RATE", "for this API key", batched=True)
SDK = Limit("sdk", "THROTTLE_SDK_RATE", "from this client address", batched=True)
# Failed key checks only ever refuse further failures (a valid key always gets through):
# per attempted key id when that key exists (its secret is being guessed), and, more loosely,
# per client address for key ids that do not exist (many clients may share one address).
KEY_FAILURES = Limit(
    "api_key_failures", "THROTTLE_AUTH_FAILURE_RATE", "of failed checks for this key id"
)
ADDRESS_FAILURES = Limit(
    "address_failures",
    "THROTTLE_AUTH_FAILURE_ADDRESS_RATE",
    "of failed checks of unknown keys from this client address",
)


def client_address(request: HttpRequest) -> str | None:
    """The client's address, the one rate limits and the staff lockout count per:
    `X-Forwarded-For` is trusted for exactly `NUM_PROXIES` hops (DRF's rule), and with none the
    socket address counts, so a client cannot pick its own address. Anything that is not an
    address (a misconfigured proxy count meets a forged header) falls back to the socket
    address."""
    for candidate in (BaseThrottle().get_ident(request), request.META.get("REMOTE_ADDR")):
        address = _address(candidate or "")
        if address is not None:
            return address
    return None


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> str | None:
    """`text` as the one spelling of an IP address, None when it is none (cached: a client
    sends many requests from one address)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


class LimitThrottle(BaseThrottle):
    """A DRF throttle over one `Limit`; the limit raises its own RATE_LIMITED answer, which
    names it."""

    limit: Limit

    def ident(self, request: Request) -> str:
        raise NotImplementedError

    def allow_request(self, request: Request, view: APIView) -> bool:
        self.limit.hit(self.ident(request))
        return True


class ApiKeyThrottle(LimitThrottle):
    """THROTTLE_API_KEY_RATE per API key."""

    limit = API_KEY

    def ident(self, request: Request) -> str:
        return request.auth.key_id


class ClientAddressThrottle(LimitThrottle):
    """THROTTLE_SDK_RATE per client address on /sdk/..."""

    limit = SDK

    def ident(self, request: Request) -> str:
        return client_address(request) or "unknown"


def count_failed_key_check(request: Request, *, existing_key_id: str | None) -> None:
    """Counts a failed API-key check; raises RATE_LIMITED past the limit that applies."""
    if existing_key_id is not None:
        KEY_FAILURES.hit(existing_key_id)
    else:
        ADDRESS_FAILURES.hit(client_address(request) or "unknown")
