from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.management.commands import flush
from django.db import connection
from rest_framework.test import APIClient
from whitenoise.middleware import WhiteNoiseMiddleware

from portal import throttling
from portal.db.postgresql.base import BREAKER
from tests import template_db
from tests.factories import ApiKeyFactory, AppFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(settings.TEST_REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


# The modules that take longest (a frozen PostgreSQL, races, browsers, servers of their own,
# a few hundred cases), longest first: each takes 3 s or more of a parallel run. A parallel run
# sends each module whole to one worker (`--dist loadfile`: a module-scoped fixture starts
# once) in the order collected, the next to whichever worker is free first, so longest first
# leaves only short modules for the end, where they even out the workers' finishing times.
# Order only: any other module follows in pytest-django's order (database tests, then
# transactional ones, then the rest).
SLOW_MODULES = (
    "tests/portal/test_database_faults.py",
    "tests/events/test_on_redis.py",
    "tests/admin/test_browser.py",
    "tests/accounts/test_concurrency.py",
    "tests/console/test_isolation.py",
    "tests/admin/test_layout.py",
    "tests/console/test_pages_browser.py",
    "tests/console/test_webhooks_browser.py",
    "tests/console/test_people_browser.py",
    "tests/portal/test_redis_faults.py",
    "tests/portal/test_deploy_settings.py",
    "tests/events/test_ssrf.py",
    "tests/portal/test_gunicorn.py",
    "tests/portal/test_sentry.py",
    "tests/accounts/test_migrations.py",
    "tests/admin/test_query_counts.py",
    "tests/admin/test_permissions.py",
    "tests/console/test_pages.py",
    "tests/admin/test_staff_signin.py",
    "tests/portal/test_database_timeouts.py",
    "tests/console/test_webhooks.py",
    "tests/events/test_events.py",
    "tests/console/test_sign_in.py",
    "tests/admin/test_actions.py",
    "tests/portal/test_bad_input.py",
    "tests/console/test_pages_attack.py",
    "tests/devices/test_concurrency.py",
    "tests/portal/test_metrics.py",
    "tests/admin/test_search.py",
    "tests/admin/test_lists.py",
    "tests/accounts/test_tasks_on_redis.py",
    "tests/portal/test_readiness.py",
    "tests/admin/test_secrets.py",
)


@pytest.hookimpl(trylast=True)  # after pytest-django has put the tests in its order
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` or `redis` need the real service, `browser` Debian's chromium
    (and PostgreSQL).
    Outside CI they are skipped when it is missing; in CI they run, and fail. In a parallel
    run's workers, the slow modules come first."""
    if hasattr(config, "workerinput"):
        rank = {module: index for index, module in enumerate(SLOW_MODULES)}
        items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))
    if settings.IN_CI:
        return
    missing = {}
    if connection.vendor != "postgresql":
        missing["postgres"] = "PostgreSQL (this run is on SQLite)"
        # The live server's threads share the in-memory SQLite database with the test's
        # connection, which crashes sqlite3 (a segfault, then the worker is lost).
        missing["browser"] = "PostgreSQL (a live server on in-memory SQLite crashes)"
    if any("redis" in item.keywords for item in items) and not _redis_answers():
        missing["redis"] = "redis (not answering)"
    if not Path(CHROMIUM).exists():
        missing["browser"] = f"{CHROMIUM} (apt-get install chromium)"
    for item in items:
        for marker in missing.keys() & set(item.keywords):
            item.add_marker(pytest.mark.skip(reason=f"needs {missing[marker]}"))


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings: None,
    request: pytest.FixtureRequest,
    django_db_keepdb: bool,
    django_db_blocker: Any,
) -> None:
    """pytest-django's (a worker's suffix on the test database's name); in a parallel run on
    PostgreSQL, the worker's database is then a copy of a template migrated once per run."""
    workerinput = getattr(request.config, "workerinput", None)
    if workerinput and connection.vendor == "postgresql" and not django_db_keepdb:
        with django_db_blocker.unblock():
            template_db.use_template(worker=workerinput["workerid"], run=workerinput["testrunuid"])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller of a parallel run drops the run's template database (the workers have
    dropped their copies)."""
    config = session.config
    if config.pluginmanager.has_plugin("dsession") and connection.vendor == "postgresql":
        from pytest_django.plugin import blocking_manager_key

        with config.stash[blocking_manager_key].unblock():
            template_db.drop_template()


@pytest.fixture(autouse=True, scope="session")
def _static_files_listed_once() -> Iterator[None]:
    """Each test client builds its own middleware, and WhiteNoise (WHITENOISE_USE_FINDERS)
    lists and stats every static file of every app when it is built: 45 ms of CPU per client,
    once most of the suite's. The files do not change during a run, so they are listed once
    per process and each new middleware gets the same table (what it serves is unchanged)."""
    listed: dict[tuple[Any, ...], dict[str, Any]] = {}
    list_files = WhiteNoiseMiddleware.add_files_from_finders

    def add_files_from_finders(self: WhiteNoiseMiddleware) -> None:
        key = (self.static_prefix, self.max_age, self.allow_all_origins, self.charset)
        if key not in listed:
            before = dict(self.files)
            list_files(self)
            listed[key] = {
                url: file for url, file in self.files.items() if before.get(url) is not file
            }
        self.files.update(listed[key])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WhiteNoiseMiddleware, "add_files_from_finders", add_files_from_finders)
        yield


@pytest.fixture(autouse=True, scope="session")
def _flush_by_delete() -> Iterator[None]:
    """A transactional test ends with Django's flush: TRUNCATE of every table (new files for
    each, 0.1 s of wall on PostgreSQL), then the post_migrate signal to make the content types
    and permissions again, as much again. Here the flush deletes the rows instead (the tables
    are small; every foreign key is checked at commit) and leaves the content types and
    permissions, which are what migrate made and which no test changes, so no signal is sent
    (post_migrate does nothing else here). A flush that resets sequences or cascades (a test
    asking for it) is Django's own."""
    kept = {ContentType._meta.db_table, Permission._meta.db_table}
    django_sql_flush, django_post_migrate = flush.sql_flush, flush.emit_post_migrate_signal
    deleting = False  # whether the flush under way is the deleting one

    def sql_flush(
        style: Any, connection: Any, reset_sequences: bool = True, allow_cascade: bool = False
    ) -> list[str]:
        nonlocal deleting
        deleting = not reset_sequences and not allow_cascade
        if not deleting:
            return django_sql_flush(style, connection, reset_sequences, allow_cascade)
        tables = connection.introspection.django_table_names(
            only_existing=True, include_views=False
        )
        quote = connection.ops.quote_name
        # Table names from the models, quoted.
        return [f"DELETE FROM {quote(table)};" for table in tables if table not in kept]  # noqa: S608

    def emit_post_migrate_signal(*args: Any, **kwargs: Any) -> None:
        if not deleting:
            django_post_migrate(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flush, "sql_flush", sql_flush)
        patch.setattr(flush, "emit_post_migrate_signal", emit_post_migrate_signal)
        yield


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()
    throttling.store.reset()  # the rate-limit counters of this process
    BREAKER.reset()  # a test that made the database miss a deadline leaves the next alone


@pytest.fixture
def admin_client(admin_user: Any) -> Any:
    """pytest-django's, signed in as the admin requires: password and authenticator."""
    from tests.staff import signed_in

    return signed_in(admin_user)


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def app(db: Any):
    return AppFactory()


@pytest.fixture
def api_key(app):
    return ApiKeyFactory(app=app)


@pytest.fixture
def customer(api_key) -> APIClient:
    """A client of the customer API, authenticated with a key holding every scope."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    client.api_key = api_key
    return client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright's sync API (never a downloaded
    browser). That API runs an event loop in the test's thread, so Django's guard against
    ORM calls from async code is lifted while the module's tests run: they stay synchronous."""
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
