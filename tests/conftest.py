from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from portal import throttling
from portal.db.postgresql.base import BREAKER
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` or `redis` need the real service, `browser` Debian's chromium.
    Outside CI they are skipped when it is missing; in CI they run, and fail."""
    _keep_module_fixtures_on_one_worker(items)
    if settings.IN_CI:
        return
    missing = {}
    if connection.vendor != "postgresql":
        missing["postgres"] = "PostgreSQL (this run is on SQLite)"
    if any("redis" in item.keywords for item in items) and not _redis_answers():
        missing["redis"] = "redis (not answering)"
    if not Path(CHROMIUM).exists():
        missing["browser"] = f"{CHROMIUM} (apt-get install chromium)"
    for item in items:
        for marker in missing.keys() & set(item.keywords):
            item.add_marker(pytest.mark.skip(reason=f"needs {missing[marker]}"))


def _keep_module_fixtures_on_one_worker(items: list[pytest.Item]) -> None:
    """A module-scoped fixture (gunicorn processes, a throwaway PostgreSQL cluster, chromium)
    is set up once per worker that runs one of the module's tests: its tests are sent to a
    single worker (`--dist loadgroup`), so it is paid for once per run, as with `-n0`."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures is None:
            continue
        if any(
            definition.scope == "module"
            for definitions in fixtures.name2fixturedefs.values()
            for definition in definitions
        ):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


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
