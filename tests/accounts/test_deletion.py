"""DELETE /users/{user_id}: immediate effect, background purge, idempotence, re-linking."""

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services, tasks
from accounts.audit import Actor
from accounts.models import (
    AuthCode,
    AuthCodeStatus,
    DeletionRequest,
    DeletionStatus,
    LinkedUser,
    UserStatus,
)
from accounts.services import users as user_services
from devices.models import Device
from portal.errors import DomainError, ErrorCode
from tests.factories import ApiKeyFactory, DeletionRequestFactory, LinkedUserFactory
from tests.helpers import issue_code, redeem
from tests.portal.test_errors import assert_envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(customer, app):
    """Alice with an active phone, a replaced phone, an outstanding code and a token."""
    sdk = APIClient()
    for install in ("phone-one-1", "phone-two-2"):
        body = redeem(
            APIClient(), issue_code(customer, "alice")["authentication_code"], app.app_id, install
        ).json()
    sdk.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    outstanding = issue_code(customer, "alice")["authentication_code"]
    return LinkedUser.objects.get(user_id=body["user_id"]), sdk, outstanding


def test_deletion_takes_effect_at_once(customer, app, alice):
    user, sdk, outstanding = alice

    response = customer.delete(f"/users/{user.user_id}")

    assert response.status_code == 202
    request_id = response.json()["request_id"]
    assert response.json() == {"request_id": request_id}
    deletion = DeletionRequest.objects.get(request_id=request_id)
    assert (deletion.deleted_user_id, deletion.status) == (user.user_id, DeletionStatus.PENDING)
    assert deletion.requested_by_key_id == customer.api_key.key_id

    user.refresh_from_db()
    assert user.status == UserStatus.DELETED
    devices = Device.objects.filter(user=user)
    assert {(d.is_active, d.inactive_reason) for d in devices} == {(False, "USER_DELETED")}
    assert not devices.filter(access_token_digest__isnull=False).exists()
    assert sdk.get("/sdk/status").json()["errorCode"] == "INVALID_ACCESS_TOKEN"
    assert not AuthCode.objects.filter(user=user, status=AuthCodeStatus.ISSUED).exists()
    refused = redeem(APIClient(), outstanding, app.app_id, "phone-three-3")
    assert refused.status_code == 403
    assert refused.json()["errorCode"] == "USER_DISABLED"
    assert customer.get(f"/users/{user.user_id}").json()["status"] == "deleted"


def test_the_same_external_id_links_to_a_new_user(customer, alice):
    user, _, _ = alice
    customer.delete(f"/users/{user.user_id}")
    body = issue_code(customer, "alice")
    assert body["user_id"] != user.user_id
    assert body["existing_user"] is False
    assert customer.get("/users", {"external_id": "alice"}).json()["user_id"] == body["user_id"]


def test_a_repeated_delete_answers_the_same_request_id(customer, alice):
    user, _, _ = alice
    first = customer.delete(f"/users/{user.user_id}").json()["request_id"]
    assert customer.delete(f"/users/{user.user_id}").json()["request_id"] == first
    services.purge_deleted_user(request_id=first)
    again = customer.delete(f"/users/{user.user_id}")
    assert (again.status_code, again.json()["request_id"]) == (202, first)
    assert DeletionRequest.objects.count() == 1


def test_the_purge_removes_the_users_rows(customer, alice, django_capture_on_commit_callbacks):
    user, _, _ = alice
    with django_capture_on_commit_callbacks(execute=True):  # the task runs in-process
        request_id = customer.delete(f"/users/{user.user_id}").json()["request_id"]

    assert not LinkedUser.objects.filter(pk=user.pk).exists()
    assert not Device.objects.filter(user_id=user.pk).exists()
    assert not AuthCode.objects.filter(user_id=user.pk).exists()
    deletion = DeletionRequest.objects.get(request_id=request_id)
    assert (deletion.status, deletion.user) == (DeletionStatus.DONE, None)
    assert deletion.completed_at is not None
    assert customer.get(f"/users/{user.user_id}").json()["errorCode"] == "USER_NOT_FOUND"


def test_purging_twice_is_harmless(customer, alice):
    user, _, _ = alice
    request_id = customer.delete(f"/users/{user.user_id}").json()["request_id"]
    assert services.purge_deleted_user(request_id=request_id) is True
    assert services.purge_deleted_user(request_id=request_id) is False


def test_a_lost_purge_is_picked_up_by_the_sweep(customer, alice, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.purge_deleted_user, "delay", broker_down)
    user, _, _ = alice
    request_id = customer.delete(f"/users/{user.user_id}").json()["request_id"]
    user_services._enqueue_purge(request_id)  # what on_commit runs: logs, does not raise

    assert tasks.sweep_deletion_requests() == 0  # within the grace period: not yet
    DeletionRequest.objects.update(requested_at=timezone.now() - dt.timedelta(minutes=10))
    assert tasks.sweep_deletion_requests() == 1
    assert not LinkedUser.objects.filter(pk=user.pk).exists()
    assert DeletionRequest.objects.get().status == DeletionStatus.DONE


def test_another_apps_user_cannot_be_deleted(customer):
    other = LinkedUserFactory()
    response = customer.delete(f"/users/{other.user_id}")
    assert response.status_code == 404
    assert response.json()["errorCode"] == "USER_NOT_FOUND"
    other.refresh_from_db()
    assert other.status == UserStatus.PENDING


def test_another_apps_deletion_request_is_not_revealed(customer):
    deletion = DeletionRequestFactory()
    response = customer.delete(f"/users/{deletion.deleted_user_id}")
    assert response.status_code == 404


def test_the_deletion_service_answers_a_repeat_with_the_first_request(app):
    """Idempotency lives in the service, whoever calls it: before and after the purge."""
    user = LinkedUserFactory(app=app)
    actor = Actor.api_key("0123456789abcdef")
    first = services.delete_user_of_app(app_id=app.pk, user_id=user.user_id, actor=actor)
    again = services.delete_user_of_app(app_id=app.pk, user_id=user.user_id, actor=actor)
    assert again.request_id == first.request_id
    services.purge_deleted_user(request_id=first.request_id)
    after_purge = services.delete_user_of_app(app_id=app.pk, user_id=user.user_id, actor=actor)
    assert after_purge.request_id == first.request_id
    assert DeletionRequest.objects.count() == 1

    other_app = LinkedUserFactory()  # a user of another app is not this app's to delete
    with pytest.raises(DomainError) as refused:
        services.delete_user_of_app(app_id=app.pk, user_id=other_app.user_id, actor=actor)
    assert refused.value.code == ErrorCode.USER_NOT_FOUND


def test_deletion_status_is_pending_then_completed(customer, app, alice):
    user, _, _ = alice
    request_id = customer.delete(f"/users/{user.user_id}").json()["request_id"]

    pending = customer.get(f"/users/deletions/{request_id}")

    assert pending.status_code == 200
    body = pending.json()
    assert body == {
        "request_id": request_id,
        "user_id": user.user_id,
        "status": "pending",
        "requested_at": body["requested_at"],
        "completed_at": None,
    }
    assert user_services.purge_deleted_user(request_id=request_id)
    completed = customer.get(f"/users/deletions/{request_id}").json()
    assert completed["status"] == "completed"
    assert completed["requested_at"] == body["requested_at"]
    assert completed["completed_at"] >= body["requested_at"]


@pytest.mark.parametrize("scopes", [["user.read"], ["user.delete"]])
def test_deletion_status_needs_user_read_or_user_delete(api, app, scopes):
    deletion = DeletionRequestFactory(app=app)
    api_key = ApiKeyFactory(app=app, scopes=scopes)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    assert api.get(f"/users/deletions/{deletion.request_id}").json()["status"] == "completed"


@pytest.mark.parametrize("request_id", ["another app's", "0" * 24, "NOT-AN-ID", "a" * 300])
def test_deletion_status_of_an_unknown_or_other_apps_request_is_not_found(
    customer, request_id, django_assert_max_num_queries
):
    if request_id == "another app's":
        request_id = DeletionRequestFactory().request_id  # of a new app
    with django_assert_max_num_queries(3):  # the key check, its last-used stamp, the lookup
        response = customer.get(f"/users/deletions/{request_id}")
    assert_envelope(response, 404, "NOT_FOUND")
