"""The purge and the deletion sweep, sent through Redis and run by a real Celery worker."""

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import tasks
from accounts.models import AuthCode, DeletionRequest, DeletionStatus, LinkedUser
from devices.models import Device
from tests.celery_worker import redis_worker, wait_until
from tests.helpers import issue_code, redeem

# The worker runs in a thread with its own connection: it needs a database server.
pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _done(request_id: str) -> bool:
    return DeletionRequest.objects.get(request_id=request_id).status == DeletionStatus.DONE


def test_a_delete_is_purged_by_the_worker(customer, app):
    body = redeem(
        APIClient(), issue_code(customer, "alice")["authentication_code"], app.app_id, "phone-1-1"
    ).json()
    issue_code(customer, "alice")
    user = LinkedUser.objects.get(user_id=body["user_id"])

    with redis_worker():
        request_id = customer.delete(f"/users/{user.user_id}").json()["request_id"]
        assert wait_until(lambda: _done(request_id)), "the worker did not purge the user"

    assert not LinkedUser.objects.filter(pk=user.pk).exists()
    assert not Device.objects.filter(user_id=user.pk).exists()
    assert not AuthCode.objects.filter(user_id=user.pk).exists()


def test_the_sweep_purges_what_the_broker_lost(customer, app, monkeypatch):
    user_id = issue_code(customer, "alice")["user_id"]
    with monkeypatch.context() as patch:  # the broker is down when the user is deleted
        patch.setattr(tasks.purge_deleted_user, "delay", _broker_down)
        request_id = customer.delete(f"/users/{user_id}").json()["request_id"]
    assert not _done(request_id)
    DeletionRequest.objects.update(requested_at=timezone.now() - dt.timedelta(minutes=10))

    with redis_worker():
        tasks.sweep_deletion_requests.delay()
        assert wait_until(lambda: _done(request_id)), "the sweep did not purge the user"
    assert not LinkedUser.objects.filter(user_id=user_id).exists()


def _broker_down(*args, **kwargs):
    raise ConnectionError("broker down")


def test_the_code_sweep_runs_on_the_worker(app):
    from tests.factories import AuthCodeFactory, LinkedUserFactory

    user = LinkedUserFactory(app=app)
    now = timezone.now()
    old = AuthCodeFactory(user=user, expires_at=now - dt.timedelta(days=30))
    recent = AuthCodeFactory(user=user, expires_at=now - dt.timedelta(minutes=1))

    with redis_worker():
        tasks.sweep_auth_codes.delay()
        assert wait_until(
            lambda: (
                not AuthCode.objects.filter(pk=old.pk).exists()
                and AuthCode.objects.get(pk=recent.pk).status == "expired"
            )
        ), "the worker did not sweep"
