"""Staff users in each role and a small world for them to look at: one app with a key, a
user with an active phone and a waiting tablet, a redeemed code, a deletion request and
audit events. Every secret of the world is kept on it, so tests can look for leaks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from accounts import audit, crypto
from accounts.audit import Actor
from accounts.models import ApiKey, App, AuditAction, AuthCode, DeletionRequest, LinkedUser
from accounts.roles import KEY_ADMINISTRATORS, SUPPORT, setup_roles
from devices.models import Device, FormFactor, InactiveReason
from tests.factories import (
    ApiKeyFactory,
    AppFactory,
    AuthCodeFactory,
    DeletionRequestFactory,
    DeviceFactory,
    LinkedUserFactory,
)
from tests.staff import signed_in

PASSWORD = "correct horse battery staple"


def staff_user(username: str, *groups: str, **extra: object) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True, **extra)
    user.groups.set(Group.objects.filter(name__in=groups))
    return user


@pytest.fixture
def roles(db: None) -> None:
    setup_roles()


@pytest.fixture
def support_user(roles: None) -> User:
    return staff_user("support", SUPPORT)


@pytest.fixture
def key_admin_user(roles: None) -> User:
    return staff_user("keyadmin", KEY_ADMINISTRATORS)


@pytest.fixture
def outsider_user(roles: None) -> User:
    return staff_user("outsider")


@pytest.fixture
def superuser(db: None) -> User:
    return staff_user("root", is_superuser=True)


def logged_in(user: User) -> Client:
    """Signed in with password and authenticator (STAFF_2FA_REQUIRED holds in the tests)."""
    return signed_in(user)


@pytest.fixture
def support(support_user: User) -> Client:
    return logged_in(support_user)


@pytest.fixture
def key_admin(key_admin_user: User) -> Client:
    return logged_in(key_admin_user)


@pytest.fixture
def outsider(outsider_user: User) -> Client:
    return logged_in(outsider_user)


@pytest.fixture
def root(superuser: User) -> Client:
    return logged_in(superuser)


@dataclass
class World:
    app: App
    key: ApiKey
    user: LinkedUser
    phone: Device
    tablet: Device
    code: AuthCode
    deletion: DeletionRequest
    secrets: list[str]
    """Every secret and digest in the world: none may ever appear on a page."""


def device_with_token(**fields: object) -> tuple[Device, str]:
    token = crypto.new_secret()
    expires = timezone.now() + dt.timedelta(days=7)
    device = DeviceFactory(
        access_token_digest=crypto.digest(token), access_token_expires_at=expires, **fields
    )
    return device, token


def build_world() -> World:
    app = AppFactory(name="Acme")
    key = ApiKeyFactory(app=app, name="backend")
    user = LinkedUserFactory(app=app, external_id="alice@example.com", status="active")
    phone, phone_token = device_with_token(
        user=user,
        install_id="phone-install-0001",
        is_active=True,
        inactive_reason=None,
        activated_at=timezone.now(),
    )
    tablet, tablet_token = device_with_token(
        user=user,
        install_id="tablet-install-0001",
        form_factor=FormFactor.TABLET,
        model="iPad Air",
        inactive_reason=InactiveReason.PHONE_PREFERRED,
    )
    code = AuthCodeFactory(
        user=user,
        api_key=key,
        status="redeemed",
        redeemed_at=timezone.now(),
        redeemed_install_id=phone.install_id,
    )
    deletion = DeletionRequestFactory(app=app)
    audit.record(
        audit.event(
            actor=Actor.device(phone.install_id),
            action=AuditAction.USER_CREATED,
            target_type="user",
            target_id=user.user_id,
            app_id=app.pk,
            user_ref=user.user_id,
            details={"issued_by_key": key.key_id},
        )
    )
    secrets = [
        key.full_key,
        key.full_key.split(".", 1)[1],
        key.secret_digest,
        code.code,
        code.code_digest,
        phone_token,
        phone.access_token_digest,
        tablet_token,
        tablet.access_token_digest,
    ]
    return World(app, key, user, phone, tablet, code, deletion, secrets)


@pytest.fixture
def world(db: None) -> World:
    return build_world()
