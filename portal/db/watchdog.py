"""A deadline for blocking database calls that holds even when the server cannot answer.

PostgreSQL's `statement_timeout` is enforced by the server, so a frozen server (process
stopped, host hung, swapped out) never sends the cancellation; TCP keepalives do not notice
either, because the server's kernel still acknowledges. The client can only stop waiting:
when a guarded call outlives its deadline, the watchdog shuts the connection's socket down,
the blocked libpq call returns at once with an error, and the caller discards the connection.

One daemon thread per process, started on first use (again in a forked child, which has
none of its parent's threads), sleeps until the earliest deadline of the calls in flight.
Guarding a call costs a set insert and a removal under a lock: no thread or timer per call,
and the thread is only woken when a call's deadline is earlier than the one it sleeps to.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time


class GuardedCall:
    """One call in flight: the socket to shut down and when. `fileno` is a duplicate of the
    connection's descriptor, owned by the watchdog until `release`: libpq may close its own
    descriptor in the middle of a failing call, and that number may then be reused by any
    other socket of the process. `expired` is set (under the watchdog's lock, before the
    shutdown) when the watchdog interrupted the call."""

    __slots__ = ("deadline", "expired", "fileno")

    def __init__(self, fileno: int, deadline: float) -> None:
        self.fileno = fileno
        self.deadline = deadline
        self.expired = False


class Watchdog:
    """Interrupts guarded calls past their deadline; one per process (`WATCHDOG`)."""

    def __init__(self) -> None:
        self._forget_threads()
        os.register_at_fork(after_in_child=self._forget_threads)

    def _forget_threads(self) -> None:
        # After a fork the lock may have been held by the parent's watchdog thread, which the
        # child does not have: start over with fresh state.
        self._condition = threading.Condition()
        self._calls: set[GuardedCall] = set()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, fileno: int, seconds: float) -> GuardedCall:
        """Start guarding a call on the socket `fileno`; pair with `release` in a `finally`.

        The watchdog works on a duplicate of the descriptor, closed by `release` under the
        same lock it acts under: it can never shut down a descriptor that was closed and
        reused for something else."""
        call = GuardedCall(os.dup(fileno), time.monotonic() + seconds)
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="db-deadline-watchdog", daemon=True
                )
                self._thread.start()
            self._calls.add(call)
            if call.deadline < self._wake_at:
                self._wake_at = call.deadline
                self._condition.notify()
        return call

    def release(self, call: GuardedCall) -> None:
        with self._condition:
            self._calls.discard(call)
            os.close(call.fileno)

    def _watch(self) -> None:
        condition = self._condition
        with condition:
            while True:
                now = time.monotonic()
                for call in [call for call in self._calls if call.deadline <= now]:
                    self._calls.discard(call)
                    call.expired = True
                    _shut_down(call.fileno)
                self._wake_at = min((call.deadline for call in self._calls), default=math.inf)
                condition.wait(None if self._wake_at == math.inf else self._wake_at - now)


def _shut_down(fileno: int) -> None:
    """Shut the socket down for both directions through a duplicate of its descriptor: the
    owner's descriptor stays valid (libpq closes it as usual), but any read or write blocked
    on the socket returns at once."""
    try:
        with socket.socket(fileno=os.dup(fileno)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down or reset by the peer: the call fails by itself


WATCHDOG = Watchdog()
