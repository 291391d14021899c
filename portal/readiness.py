"""Readiness checks that answer in bounded time whatever the backing services do.

Each service is checked by a `Probe` in a background thread of its own, one per process and
reused (the database check keeps its connection like any request thread); the caller waits
for the result at most until its deadline. A check still in flight is never started twice:
probes arriving while a service hangs wait on the same check instead of piling up threads
and connections. A failure streak logs one line when it starts and one when it ends, with
the service and the error's text, never a traceback: a load balancer probing every second
must not flood the log.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import redis
from django.conf import settings
from django.db import connection

from portal.errors import describe_error

log = logging.getLogger("portal.health")

# The whole answer of /readyz, both checks included, fits in 2 s with room to spare.
READINESS_TIMEOUT = 1.5
# A Redis ping gets this long per attempt to connect and to answer.
REDIS_TIMEOUT = 1.0


class Probe:
    """Checks one service in this process's background thread for it; `check` raises when
    the service does not answer."""

    def __init__(self, service: str, check: Callable[[], object]) -> None:
        self.service = service
        self._check = check
        self._forget_thread()
        os.register_at_fork(after_in_child=self._forget_thread)

    def _forget_thread(self) -> None:
        # A forked child has none of its parent's threads (and maybe a lock held by one).
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[Future[object]] | None = None
        self._in_flight: Future[object] | None = None
        self._failing = False

    def start(self) -> Future[object]:
        """The check in flight, or a new one when none is."""
        with self._lock:
            if self._in_flight is None or self._in_flight.done():
                if self._requests is None:
                    self._requests = queue.SimpleQueue()
                    threading.Thread(
                        target=self._serve,
                        args=(self._requests,),
                        name=f"readiness-{self.service}",
                        daemon=True,
                    ).start()
                self._in_flight = Future()
                self._requests.put(self._in_flight)
            return self._in_flight

    def outcome(self, check: Future[object], timeout: float) -> bool:
        """Whether the check succeeded within `timeout` seconds (it goes on in the background
        when it did not, bounded by the service's own timeouts)."""
        try:
            check.result(timeout=max(timeout, 0))
        except FutureTimeout:
            self._report(f"no answer within {READINESS_TIMEOUT:g} s")
            return False
        except Exception as exc:
            self._report(f"{exc.__class__.__name__}: {describe_error(exc)}")
            return False
        self._report(None)
        return True

    def _serve(self, requests: queue.SimpleQueue[Future[object]]) -> None:
        while True:
            check = requests.get()
            try:
                check.set_result(self._check())
            except Exception as exc:
                check.set_exception(exc)

    def _report(self, error: str | None) -> None:
        with self._lock:
            was_failing, self._failing = self._failing, error is not None
        if error is not None and not was_failing:
            log.warning("readiness: %s does not answer: %s", self.service, error)
        elif error is None and was_failing:
            log.info("readiness: %s answers again", self.service)


def _database_answers() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        # What Django does at the end of a request: drop the connection when it broke or
        # outlived CONN_MAX_AGE, keep it otherwise.
        connection.close_if_unusable_or_obsolete()


def _redis_answers() -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()


DATABASE = Probe("database", _database_answers)
REDIS = Probe("redis", _redis_answers)


def readiness() -> dict[str, bool]:
    """Which backing services answer: the database always, Redis when it is configured.
    Returns within READINESS_TIMEOUT seconds."""
    probes = [DATABASE, REDIS] if settings.REDIS_URL else [DATABASE]
    checks = [(probe, probe.start()) for probe in probes]
    deadline = time.monotonic() + READINESS_TIMEOUT
    return {
        probe.service: probe.outcome(check, deadline - time.monotonic()) for probe, check in checks
    }
