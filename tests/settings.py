"""Test settings: the suite runs on the real PostgreSQL (TEST_DATABASE_URL, default the local
server). Outside CI, a machine without PostgreSQL falls back to SQLite and the tests marked
`postgres` are skipped; in CI (CI=true) a missing PostgreSQL is an error, never a skip."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production")
os.environ.setdefault("THROTTLE_API_KEY_RATE", "100000/min")
os.environ.setdefault("THROTTLE_SDK_RATE", "100000/min")
os.environ.setdefault("THROTTLE_AUTH_FAILURE_RATE", "100000/min")
os.environ.setdefault("THROTTLE_AUTH_FAILURE_ADDRESS_RATE", "100000/min")

from portal.db.config import configure_postgresql, is_postgresql
from portal.settings import *  # noqa: F403
from portal.settings import DATABASE_CONNECT_TIMEOUT, DATABASE_STATEMENT_TIMEOUT, env

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal")


def _postgres_answers(url: str) -> bool:
    import psycopg

    config = env.db_url_config(url)
    try:
        psycopg.connect(
            host=config["HOST"],
            port=config["PORT"] or 5432,
            user=config["USER"],
            dbname="postgres",
            connect_timeout=3,
        ).close()
        return True
    except psycopg.Error:
        return False


_database = env.db_url_config(TEST_DATABASE_URL)
if is_postgresql(_database) and not _postgres_answers(TEST_DATABASE_URL):
    if IN_CI:
        raise RuntimeError(f"CI: PostgreSQL does not answer at {TEST_DATABASE_URL}")
    import warnings

    warnings.warn("PostgreSQL does not answer: running on SQLite", stacklevel=1)
    _database = env.db_url_config("sqlite://:memory:")
if is_postgresql(_database):
    # The production backend and timeouts (portal/db); no persistent connections, so that a
    # thread a test starts leaves nothing open when the test database is dropped.
    configure_postgresql(
        _database,
        connect_timeout=DATABASE_CONNECT_TIMEOUT,
        statement_timeout=DATABASE_STATEMENT_TIMEOUT,  # pytest is a web process
        conn_max_age=0,
        prepared_statements=True,  # as in production, where connections are kept
    )
# TEST_DATABASE_NAME lets two runs on one server (two checkouts, two people) keep apart.
_database["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or None}
DATABASES = {"default": _database}

# Tests run with in-process tasks and a private cache; the Celery and Redis tests opt in.
REDIS_URL = ""
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = True
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
