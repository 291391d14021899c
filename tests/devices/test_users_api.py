"""GET /users/{user_id} and GET /users?external_id=…: reading users with their devices."""

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import LinkedUser, Scope, UserStatus
from tests.factories import ApiKeyFactory, DeviceFactory, LinkedUserFactory
from tests.helpers import issue_code, redeem

pytestmark = pytest.mark.django_db


def _client(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    return client


def test_a_user_with_its_devices_active_first(customer, api, app):
    for install in ("phone-one-1", "phone-two-2", "phone-three-3"):
        redeem(api, issue_code(customer, "alice")["authentication_code"], app.app_id, install)
    user_id = issue_code(customer, "alice")["user_id"]

    response = customer.get(f"/users/{user_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == user_id
    assert body["external_id"] == "alice"
    assert body["status"] == "active"
    assert body["devices"][0]["install_id"] == "phone-three-3"
    assert [d["active"] for d in body["devices"]] == [True, False, False]
    assert {d["inactive_reason"] for d in body["devices"][1:]} == {"REPLACED_BY_NEWER_DEVICE"}


def test_lookup_by_external_id(customer, app):
    user_id = issue_code(customer, "Zoë 用户")["user_id"]
    response = customer.get("/users", {"external_id": "Zoë 用户"})
    assert response.status_code == 200
    assert response.json()["user_id"] == user_id
    assert response.json()["status"] == "pending"
    assert response.json()["devices"] == []


def test_lookup_ignores_a_deleted_user(customer, app):
    LinkedUserFactory(app=app, external_id="alice", status=UserStatus.DELETED)
    response = customer.get("/users", {"external_id": "alice"})
    assert response.status_code == 404
    assert response.json()["errorCode"] == "USER_NOT_FOUND"


@pytest.mark.parametrize("path", ["/users/{other}", "/users?external_id=alice"])
def test_another_apps_user_is_not_found(customer, path):
    other = LinkedUserFactory(external_id="alice")
    response = customer.get(path.format(other=other.user_id))
    assert response.status_code == 404
    assert response.json()["errorCode"] == "USER_NOT_FOUND"


@pytest.mark.parametrize("user_id", ["0" * 24, "not-a-user-id", "A" * 24, "1"])
def test_unknown_or_malformed_user_ids_are_not_found(customer, user_id):
    response = customer.get(f"/users/{user_id}")
    assert response.status_code == 404
    assert response.json()["errorCode"] == "USER_NOT_FOUND"


def test_missing_external_id_is_invalid(customer):
    response = customer.get("/users")
    assert response.status_code == 400
    assert response.json()["errorCode"] == "INVALID_REQUEST"
    assert "external_id" in response.json()["fields"]


@pytest.mark.parametrize(
    ("scopes", "method", "path", "allowed"),
    [
        ([Scope.USER_LINK], "post", "/users/auth-code", True),
        ([Scope.USER_READ], "post", "/users/auth-code", False),
        ([Scope.USER_READ], "get", "/users/{user_id}", True),
        ([Scope.USER_LINK], "get", "/users/{user_id}", False),
        ([Scope.USER_DELETE], "get", "/users?external_id=alice", False),
        ([Scope.USER_READ], "get", "/users?external_id=alice", True),
        ([Scope.USER_DELETE], "delete", "/users/{user_id}", True),
        ([Scope.USER_READ], "delete", "/users/{user_id}", False),
    ],
)
def test_scopes(app, scopes, method, path, allowed):
    user = LinkedUserFactory(app=app, external_id="alice")
    client = _client(ApiKeyFactory(app=app, scopes=scopes))
    response = (
        getattr(client, method)(
            path.format(user_id=user.user_id), {"external_id": "alice"}, format="json"
        )
        if method == "post"
        else getattr(client, method)(path.format(user_id=user.user_id))
    )
    if allowed:
        assert response.status_code in {200, 202}, response.content
    else:
        assert response.status_code == 403
        assert response.json()["errorCode"] == "INSUFFICIENT_SCOPE"


@pytest.mark.parametrize("crowded", [False, True])
def test_read_query_budget(customer, app, crowded, django_assert_max_num_queries):
    user = LinkedUserFactory(app=app, external_id="alice")
    if crowded:
        DeviceFactory.create_batch(100, user=user)
    customer.get(f"/users/{user.user_id}")  # the key's last_used_at is written once a minute
    with django_assert_max_num_queries(3):
        response = customer.get(f"/users/{user.user_id}")
    assert len(response.json()["devices"]) == (100 if crowded else 0)


@pytest.mark.parametrize("lookup", ["by_id", "by_external_id"])
def test_a_disabled_user_says_so_on_both_lookups(customer, api, app, lookup):
    """The customer learns it from the user object, not only when issuance answers 403; the
    device stays active (re-enabling gives it back its place), the user object says why it
    is refused."""
    redeem(api, issue_code(customer, "alice")["authentication_code"], app.app_id, "phone-one-1")
    user = LinkedUser.objects.get(app=app, external_id="alice")
    path = f"/users/{user.user_id}" if lookup == "by_id" else "/users?external_id=alice"

    enabled = customer.get(path).json()
    assert (enabled["status"], enabled["disabled"]) == ("active", False)
    assert list(enabled)[:4] == ["user_id", "external_id", "status", "disabled"]

    account_services.set_user_disabled(user=user, disabled=True, actor=Actor.staff("support"))
    disabled = customer.get(path).json()
    assert (disabled["status"], disabled["disabled"]) == ("active", True)
    assert disabled["devices"][0]["active"] is True
    assert (
        customer.post("/users/auth-code", {"external_id": "alice"}, format="json").json()[
            "errorCode"
        ]
        == "USER_DISABLED"
    )

    account_services.set_user_disabled(user=user, disabled=False, actor=Actor.staff("support"))
    assert customer.get(path).json()["disabled"] is False
