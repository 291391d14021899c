"""POST /users/auth-code: issuance, restoration, isolation, query budget."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import crypto
from accounts.models import AuthCode, AuthCodeStatus, LinkedUser, UserStatus
from tests.factories import ApiKeyFactory, AuthCodeFactory, DeviceFactory, LinkedUserFactory
from tests.helpers import issue_code

pytestmark = pytest.mark.django_db

# The key check and one statement on PostgreSQL. SQLite: the key, then the upsert and the insert
# between BEGIN and COMMIT (SAVEPOINT and RELEASE inside a test's transaction).
ISSUANCE_QUERIES = 2 if connection.vendor == "postgresql" else 5


def test_first_code_creates_a_pending_user(customer, app):
    before = timezone.now().replace(microsecond=0)
    body = issue_code(customer, "alice")

    assert set(body) == {
        "authentication_code",
        "expires_at",
        "expires_in",
        "user_id",
        "existing_user",
    }
    assert body["existing_user"] is False
    assert body["expires_in"] == 600
    assert len(body["user_id"]) == 24
    assert int(body["user_id"], 16) >= 0
    assert len(body["authentication_code"]) >= 43  # 256 bits, URL-safe
    expires_at = dt.datetime.fromisoformat(body["expires_at"])
    assert body["expires_at"].endswith("Z")
    assert (
        before + dt.timedelta(seconds=600)
        <= expires_at
        <= timezone.now() + dt.timedelta(seconds=600)
    )

    user = LinkedUser.objects.get(user_id=body["user_id"])
    assert (user.app, user.external_id, user.status) == (app, "alice", UserStatus.PENDING)
    code = AuthCode.objects.get(user=user)
    assert code.api_key == customer.api_key
    assert code.status == AuthCodeStatus.ISSUED
    assert code.expires_at == expires_at


def test_only_the_digest_of_the_code_is_stored(customer):
    body = issue_code(customer, "alice")
    code = AuthCode.objects.get()
    assert code.code_digest == crypto.digest(body["authentication_code"])
    stored = [str(value) for value in AuthCode.objects.values().get().values()]
    assert body["authentication_code"] not in stored


def test_the_same_external_id_restores_the_same_user(customer):
    first = issue_code(customer, "alice")
    second = issue_code(customer, "alice")

    assert second["user_id"] == first["user_id"]
    assert second["existing_user"] is True
    assert second["authentication_code"] != first["authentication_code"]
    assert LinkedUser.objects.count() == 1
    # Codes are independent: the new one does not void the earlier one.
    assert AuthCode.objects.filter(status=AuthCodeStatus.ISSUED).count() == 2


def test_external_ids_are_compared_exactly(customer):
    ids = {
        issue_code(customer, name)["user_id"] for name in ["Alice", "alice", "alice ", "Zoë 用户"]
    }
    assert len(ids) == 4


def test_the_same_external_id_in_two_apps_is_two_users(customer, app):
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiKeyFactory().full_key}")

    mine = issue_code(customer, "alice")
    theirs = issue_code(other, "alice")

    assert mine["user_id"] != theirs["user_id"]
    assert theirs["existing_user"] is False


def test_a_deleted_user_is_not_restored(customer, app):
    old = LinkedUserFactory(app=app, external_id="alice", status=UserStatus.DELETED)
    body = issue_code(customer, "alice")
    assert body["user_id"] != old.user_id
    assert body["existing_user"] is False


def test_a_disabled_user_gets_no_code(customer, app):
    LinkedUserFactory(app=app, external_id="alice", disabled_at=timezone.now())
    response = customer.post("/users/auth-code", {"external_id": "alice"}, format="json")
    assert response.status_code == 403
    assert response.json()["errorCode"] == "USER_DISABLED"
    assert AuthCode.objects.count() == 0


def test_ttl_comes_from_the_setting(customer, settings):
    settings.AUTH_CODE_TTL_SECONDS = 90
    body = issue_code(customer, "alice")
    assert body["expires_in"] == 90
    assert AuthCode.objects.get().expires_at == dt.datetime.fromisoformat(body["expires_at"])


def test_last_used_at_is_written_at_most_once_a_minute(customer):
    key = customer.api_key
    issue_code(customer, "alice")
    key.refresh_from_db()
    first_use = key.last_used_at
    assert first_use is not None

    issue_code(customer, "bob")
    key.refresh_from_db()
    assert key.last_used_at == first_use


@pytest.mark.parametrize("crowded", [False, True])
def test_issuance_query_budget(customer, app, crowded, django_assert_num_queries):
    """2 queries on PostgreSQL (the key; the user's upsert and the code's insert in one
    statement), for a new user and a restored one, whatever the data. The first use of a key
    in a minute costs one more (its last_used_at); warm it first."""
    issue_code(customer, "warm-up")
    if crowded:
        user = LinkedUserFactory(app=app, external_id="alice")
        DeviceFactory.create_batch(100, user=user)
        AuthCodeFactory.create_batch(100, user=user)
    with django_assert_num_queries(ISSUANCE_QUERIES):
        issue_code(customer, "alice")
    with django_assert_num_queries(ISSUANCE_QUERIES):
        issue_code(customer, "alice")


def test_a_keys_first_use_in_a_minute_costs_one_more_query(customer, django_assert_num_queries):
    """last_used_at is written at most once a minute per key: that write is the only extra."""
    with django_assert_num_queries(ISSUANCE_QUERIES + 1):
        issue_code(customer, "alice")
    with django_assert_num_queries(ISSUANCE_QUERIES):
        issue_code(customer, "alice")
