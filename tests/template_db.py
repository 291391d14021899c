"""One migrated test database per parallel run, copied for each worker.

Each xdist worker needs a test database of its own, and migrating one costs about 1.5 s of
CPU (and the server's as much again) before the worker's first test. On PostgreSQL the first
worker to get there migrates a template database once for the run; every worker's database is
then made from it with CREATE DATABASE ... TEMPLATE (a file copy: the same tables, migrations
and content types, made by the same migrate), and the migrate that Django still runs finds
nothing to do. The template is dropped when the run ends (`drop_template`, in the controller).
On SQLite, in a serial run (`-n0`) or with --reuse-db, nothing changes."""

from __future__ import annotations

import fcntl
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection


def _test_name(database: dict[str, Any]) -> str:
    """The test database's name before pytest-django adds a worker's suffix to it."""
    return database["TEST"].get("NAME") or f"test_{database['NAME']}"


def template_name(database: dict[str, Any], worker: str = "") -> str:
    return f"{_test_name(database).removesuffix(f'_{worker}')}_template"


def _lock_path(template: str) -> Path:
    return Path(tempfile.gettempdir()) / f"portal-{template}.lock"


def use_template(*, worker: str, run: str) -> None:
    """Make the worker's test database a copy of the run's template, migrating the template
    first if no worker of this run (`run`: xdist's id of it) has yet."""
    database = settings.DATABASES["default"]
    template = template_name(database, worker)
    with _lock_path(template).open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait until it is migrated
        lock.seek(0)
        if lock.read() != run:
            _migrate(template)
            lock.seek(0)
            lock.truncate()
            lock.write(run)
            lock.flush()
    database["TEST"]["TEMPLATE"] = template


def _migrate(template: str) -> None:
    """Create the template as Django creates a test database (dropping one a crashed run
    left), then let go of it: no session may be connected to a database being copied."""
    database = settings.DATABASES["default"]
    name, test_name = database["NAME"], database["TEST"].get("NAME")
    database["TEST"]["NAME"] = template
    try:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    finally:
        connection.close()
        database["NAME"], database["TEST"]["NAME"] = name, test_name


def drop_template() -> None:
    """Drop the run's template (the controller's, once the workers are done)."""
    template = template_name(settings.DATABASES["default"])
    with connection.creation._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(template)}")
    _lock_path(template).unlink(missing_ok=True)
