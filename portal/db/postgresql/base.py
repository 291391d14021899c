"""Django's PostgreSQL backend, with a client-side deadline on every blocking call.

Everything else is Django's own backend (`connection.vendor` is still "postgresql"). Two
options in `OPTIONS`, both in seconds, set from the environment by `portal.db.config`:

- `statement_timeout` (absent or 0: none) is sent as the session's `statement_timeout`
  (libpq `options`, so no extra round trip), and, plus `GRACE_SECONDS`, is how long the
  client waits for a statement, a commit or a rollback. Normally the server's own timeout
  answers first and the connection survives; the client's deadline only acts when the server
  cannot answer at all.
- `connect_timeout` (libpq's own, at least 2 s in psycopg) also bounds the rest of setting a
  connection up and the `CONN_HEALTH_CHECKS` ping, which are as cheap as connecting.

`CONN_HEALTH_CHECKS` pings a kept connection (`SELECT 1`, a round trip) before a request
uses it. A connection that answered a statement within the last `TRUSTED_FOR_SECONDS` and
that libpq still holds as sound is not pinged: under load that is every request, and the ping
would be one round trip in three of an issuance. A connection idle for longer (where a server
restart or a dropped network goes unnoticed) is pinged as Django does. The price: after a
server restart or failover, each connection used within that second fails one request (503),
and Django replaces it at the end of that request.

When a deadline passes the watchdog shuts the socket down, the call raises OperationalError
(the API answers 503 SERVICE_UNAVAILABLE) and Django discards the connection, so the next
request connects again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, NotSupportedError, OperationalError
from django.db.backends.postgresql import base

from portal.db.watchdog import WATCHDOG

T = TypeVar("T")

# How much longer than statement_timeout the client waits: time for the server's own
# cancellation to arrive, so that a merely slow statement does not cost the connection.
GRACE_SECONDS = 1.0
# psycopg waits at least this long to connect, whatever connect_timeout says.
PSYCOPG_MIN_CONNECT_TIMEOUT = 2.0
# A connection that answered this recently needs no health check ping.
TRUSTED_FOR_SECONDS = 1.0
# The SQLSTATE of a prepared statement whose result type a migration changed.
FEATURE_NOT_SUPPORTED = "0A000"


class Breaker:
    """Once the database failed to answer (a deadline passed, a connection attempt failed),
    one call at a time finds out whether it answers again while every other call of the
    process fails at once, instead of each thread sitting out the full timeouts of a frozen
    server (and health checks queueing behind them). The first call after the database is
    back succeeds: nothing waits for a clock. One per process; while the database answers, a
    check costs an attribute read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing = False
        self._probing = False

    def enter(self) -> bool:
        """Raises OperationalError while another call probes; True when the caller probes."""
        if not self._failing:
            return False
        with self._lock:
            if not self._failing:
                return False
            if self._probing:
                # Django's own class: raised outside its error wrapper (execute wrappers,
                # commit), it still reaches the API's 503 mapping.
                raise OperationalError(
                    "the database did not answer moments ago and is being tried again"
                )
            self._probing = True
            return True

    def answered(self) -> None:
        if self._failing:
            with self._lock:
                self._failing = self._probing = False

    def failed(self, probe: bool) -> None:
        with self._lock:
            self._failing = True
            if probe:
                self._probing = False

    def reset(self) -> None:
        with self._lock:
            self._failing = self._probing = False


BREAKER = Breaker()


class PreparedCursor(base.ServerBindingCursor):
    """A cursor whose statements are bound on the server and prepared once per connection:
    PostgreSQL then neither parses nor plans them again, and psycopg sends only the values.
    Measured on the access-token lookup (three tables joined): 198 µs of the server's CPU as
    Django sends it (the values quoted into the text), 28 µs prepared. `prepare_threshold`
    None (DATABASE_PREPARED_STATEMENTS off) leaves them bound on the server, unprepared."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = True, **kwargs: Any
    ) -> Any:
        return super().execute(query, params, prepare=prepare, **kwargs)

    def close(self) -> None:
        """Kept open for the next statement on its connection (building a cursor costs as much
        CPU as running a prepared statement); it goes with its connection."""


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS) -> None:
        super().__init__(settings_dict, alias)
        options = self.settings_dict.get("OPTIONS", {})
        statement = float(options.get("statement_timeout") or 0)
        connect = float(options.get("connect_timeout") or 0)
        self.statement_deadline = statement + GRACE_SECONDS if statement > 0 else None
        setup = max(connect, PSYCOPG_MIN_CONNECT_TIMEOUT) if connect > 0 else None
        self.setup_deadline = min(
            (seconds for seconds in (setup, self.statement_deadline) if seconds), default=None
        )
        # Execute wrappers see every execute() and executemany() of Django's cursors.
        self.execute_wrappers.append(self._guarded_execute)
        self.answered_at = -math.inf  # time.monotonic() of the last statement answered
        self._prepared_cursor: PreparedCursor | None = None  # of the current connection

    def prepared_cursor(self) -> Any:
        """`cursor()`, with a PreparedCursor: for a few statements written once as text and run
        on every request (`portal.db.rows.cursor()`), not for the ORM's."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        kept = self._prepared_cursor
        if kept is None or kept.connection is not self.connection:
            kept = self._prepared_cursor = PreparedCursor(self.connection)
        with self.wrap_database_errors:
            return self._prepare_cursor(kept)

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and time.monotonic() - self.answered_at < TRUSTED_FOR_SECONDS
            and not self.connection.closed
            and self.connection.pgconn.status == self.Database.pq.ConnStatus.OK
            and self.connection.pgconn.transaction_status == self.Database.pq.TransactionStatus.IDLE
        ):
            self.health_check_done = True  # it answered a moment ago: no ping
            return
        super().close_if_health_check_failed()

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        seconds = float(params.pop("statement_timeout", None) or 0)
        if seconds > 0:
            timeout = f"-c statement_timeout={round(seconds * 1000)}"
            params["options"] = f"{params.get('options', '')} {timeout}".strip()
        return params

    def _guarded_execute(
        self, execute: Callable[..., T], sql: Any, params: Any, many: bool, context: Any
    ) -> T:
        try:
            return self._within(self.statement_deadline, execute, sql, params, many, context)
        except NotSupportedError as exc:
            # "cached plan must not change result type": a migration changed the type of a
            # column a prepared statement reads. PostgreSQL refuses the statement on this
            # connection for as long as it lives, so it goes at the end of the request.
            if not (
                isinstance(context["cursor"].cursor, PreparedCursor)
                and getattr(exc.__cause__, "sqlstate", None) == FEATURE_NOT_SUPPORTED
            ):
                raise
            self.close_at = -math.inf
            raise OperationalError(
                "a prepared statement no longer matches its table; connection dropped"
            ) from exc

    def _commit(self) -> None:
        return self._within(self.statement_deadline, super()._commit)

    def _rollback(self) -> None:
        return self._within(self.statement_deadline, super()._rollback)

    def is_usable(self) -> bool:
        return self._within(self.setup_deadline, super().is_usable)

    def init_connection_state(self) -> None:
        return self._within(self.setup_deadline, super().init_connection_state)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        probe = BREAKER.enter()
        answered = False
        try:
            connection = super().get_new_connection(conn_params)
            answered = True
            return connection
        except self.Database.OperationalError:
            raise  # refused, timed out: the database does not answer
        except Exception:
            answered = True  # something else went wrong, not the database's answering
            raise
        finally:
            if answered:
                BREAKER.answered()
            else:
                BREAKER.failed(probe)

    def _within(self, seconds: float | None, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on this connection, interrupted after `seconds`."""
        fileno = self._socket() if seconds else None
        if fileno is None:
            return function(*args)
        probe = BREAKER.enter()
        expired = False
        try:
            call = WATCHDOG.watch(fileno, seconds)
            try:
                result = function(*args)
                self.answered_at = time.monotonic()
                return result
            except Exception as exc:
                if call.expired:
                    raise OperationalError(
                        f"the database did not answer within {seconds:g} s; connection dropped"
                    ) from exc
                raise
            finally:
                WATCHDOG.release(call)
                # Also when the call completed just as the deadline passed: the socket is shut
                # down, so Django must check the connection and drop it.
                expired = call.expired
                if expired:
                    self.errors_occurred = True
        finally:
            if expired:
                BREAKER.failed(probe)
            else:
                BREAKER.answered()

    def _socket(self) -> int | None:
        if self.connection is None:
            return None
        try:
            return self.connection.pgconn.socket
        except self.Database.Error:
            return None  # closed or lost: the call fails at once by itself
