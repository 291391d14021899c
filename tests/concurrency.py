"""Runs callables at the same instant in real threads, for the race tests on PostgreSQL.

Each thread opens its own database connection before the start line, so connecting does not
spread the starts apart; a threading.Barrier then releases them all together, and each
thread closes its connection at the end (a leftover one would block the flush between
transactional tests). What every call returned or raised is collected in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

DEFAULT_TIMEOUT = 30.0
POLL = 0.005  # seconds between two looks at who waits for whom


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None

    def get(self) -> Any:
        """The value, or the exception the call raised, raised again here."""
        if self.error is not None:
            raise self.error
        return self.value


def run_together(
    calls: Sequence[Callable[[], Any]], *, timeout: float = DEFAULT_TIMEOUT
) -> list[Outcome]:
    """Starts every call at once, one thread each; the outcomes come back in the calls' order.
    Fails when a thread is still running after `timeout` seconds (a deadlock, a lost wakeup)."""
    barrier = threading.Barrier(len(calls))
    outcomes = [Outcome() for _ in calls]

    def worker(outcome: Outcome, call: Callable[[], Any]) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=timeout)
            outcome.value = call()
        except BaseException as exc:  # handed back to the test
            barrier.abort()  # a thread that never reaches the start line frees the others
            outcome.error = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(outcome, call), daemon=True)
        for outcome, call in zip(outcomes, calls, strict=True)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        raise AssertionError(f"{stuck} of {len(threads)} threads still running after {timeout}s")
    return outcomes


def backend_pid() -> int:
    """The PostgreSQL backend of this thread's connection."""
    connection.ensure_connection()
    return connection.connection.info.backend_pid


def waiting_for(
    pid: int, *, done: threading.Event | None = None, timeout: float = DEFAULT_TIMEOUT
) -> int | None:
    """The pid of a backend waiting for a lock that backend `pid` holds, once there is one
    (polled on this thread's connection); None if `done` is set first, as when the other side
    took no lock and finished instead of waiting. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid]
            )
            row = cursor.fetchone()
        if row:
            return row[0]
        if done is not None and done.is_set():
            return None
        time.sleep(POLL)
    raise AssertionError(f"no backend waited for backend {pid} within {timeout}s")


def values(outcomes: Sequence[Outcome]) -> list[Any]:
    """Every outcome's value; the first exception a call raised fails the test here."""
    return [outcome.get() for outcome in outcomes]
