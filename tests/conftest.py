from __future__ import annotations

import os
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from tests.factories import ApiKeyFactory, AppFactory


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` need the real server; outside CI they skip on SQLite."""
    on_postgres = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    if on_postgres or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set TEST_DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


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
