"""How the database connection is set up for this kind of process. `portal/settings.py` and
the test settings both use it, so the suite runs on the production backend and options."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured

ProcessKind = Literal["web", "batch"]

ENGINE = "portal.db.postgresql"
_POSTGRESQL_ENGINES = {"django.db.backends.postgresql", ENGINE}


def process_kind(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ProcessKind:
    """Whether this process answers people (web: a short statement timeout, a stuck query
    must become a quick 503) or runs jobs (batch: Celery worker and beat, management commands
    such as `migrate` on a big table, which may legitimately run long statements).

    `PORTAL_PROCESS=web|batch` says so explicitly. Otherwise the command line decides: the
    `celery` program is batch; `manage.py`/`django-admin` with a command other than
    `runserver` is batch; anything else (gunicorn, runserver, pytest) is web."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("PORTAL_PROCESS", "").strip().lower()
    if explicit:
        if explicit not in ("web", "batch"):
            raise ImproperlyConfigured(f"PORTAL_PROCESS must be web or batch, not {explicit!r}")
        return "web" if explicit == "web" else "batch"
    program, command = _program_and_command(sys.argv if argv is None else argv)
    if program == "celery" or (program == "django" and command != "runserver"):
        return "batch"
    return "web"


def is_runserver(argv: Sequence[str] | None = None) -> bool:
    """Django's development server: a new thread per request."""
    return _program_and_command(sys.argv if argv is None else argv) == ("django", "runserver")


def _program_and_command(argv: Sequence[str]) -> tuple[str, str | None]:
    if not argv:
        return "", None
    path = PurePath(argv[0])
    # `python -m celery` and `python -m django` run the package's __main__.py.
    name = path.parent.name if path.name == "__main__.py" else path.name
    program = {"manage.py": "django", "django-admin": "django"}.get(name, name)
    return program, (argv[1] if len(argv) > 1 else None)


# A count of executions psycopg would wait for before preparing a statement of its own accord:
# never reached, so only the statements that ask for it are prepared.
PREPARE_ONLY_WHEN_ASKED = 2**62


def is_postgresql(database: Mapping[str, Any]) -> bool:
    return database.get("ENGINE") in _POSTGRESQL_ENGINES


def configure_postgresql(
    database: dict[str, Any],
    *,
    connect_timeout: int,
    statement_timeout: float,
    conn_max_age: int,
    prepared_statements: bool | None = None,
) -> None:
    """The guarded backend (portal/db/postgresql) and what bounds each wait on the server:
    `connect_timeout` a connection attempt, TCP keepalives an idle connection whose peer died
    (found within idle + interval x count = 60 s), `statement_timeout` (0: none) a statement.
    `prepared_statements`: the hottest statements (`portal.db.rows.cursor()`) are prepared
    once per connection (None: when connections are kept, CONN_MAX_AGE not 0, since preparing
    costs a round trip per statement and connection); off for a pooler that cannot keep them
    (PgBouncer in transaction mode before 1.22). Every other statement is sent as Django sends
    it, never prepared.
    What DATABASE_URL itself sets (`?connect_timeout=…`, `?conn_max_age=…`) wins."""
    database["ENGINE"] = ENGINE
    database.setdefault("CONN_MAX_AGE", conn_max_age)
    database["CONN_HEALTH_CHECKS"] = True
    options = database.setdefault("OPTIONS", {})
    options.setdefault("connect_timeout", connect_timeout)
    options.setdefault("keepalives", 1)
    options.setdefault("keepalives_idle", 30)
    options.setdefault("keepalives_interval", 10)
    options.setdefault("keepalives_count", 3)
    options.setdefault("statement_timeout", statement_timeout)
    # psycopg prepares a statement only when asked (`prepare=True`, which only the hot-path
    # cursor passes; Django's own cursors never do); None switches preparing off entirely.
    if prepared_statements is None:
        prepared_statements = database["CONN_MAX_AGE"] != 0
    options.setdefault(
        "prepare_threshold", PREPARE_ONLY_WHEN_ASKED if prepared_statements else None
    )
