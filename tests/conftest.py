from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from tests.factories import ApiKeyFactory, AppFactory


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(settings.TEST_REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` or `redis` need the real service. Outside CI they are skipped
    when it is missing; in CI they run, and fail."""
    if settings.IN_CI:
        return
    missing = set()
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        missing.add("postgres")
    if any("redis" in item.keywords for item in items) and not _redis_answers():
        missing.add("redis")
    for item in items:
        for service in missing & set(item.keywords):
            item.add_marker(pytest.mark.skip(reason=f"needs {service} (not answering)"))


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()


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


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"
