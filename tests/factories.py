"""factory-boy factories for every model. Secrets go through the real crypto helpers; the
factories of secret-bearing rows leave the secret on the object (`full_key`, `code`)."""

from __future__ import annotations

import datetime as dt

import factory
from django.contrib.auth.models import User
from django.utils import timezone

from accounts import crypto
from accounts.models import ApiKey, App, AuthCode, DeletionRequest, LinkedUser, Scope
from console.models import Membership, Role
from devices.models import Device, FormFactor, Platform


class AppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = App

    name = factory.Sequence(lambda n: f"App {n}")
    contact_emails = factory.LazyFunction(lambda: ["ops@example.com"])
    sdk_config = factory.LazyFunction(lambda: {"tracking": {"interval_s": 30}, "features": ["a"]})


class ApiKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiKey

    app = factory.SubFactory(AppFactory)
    name = factory.Sequence(lambda n: f"key {n}")
    scopes = factory.LazyFunction(lambda: list(Scope.values))
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=365))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        secret = crypto.new_secret()
        kwargs["secret_digest"] = crypto.digest(secret)
        api_key = super()._create(model_class, *args, **kwargs)
        api_key.full_key = f"{api_key.key_id}.{secret}"
        return api_key


class LinkedUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LinkedUser

    app = factory.SubFactory(AppFactory)
    external_id = factory.Sequence(lambda n: f"customer-user-{n}")


class AuthCodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuthCode

    user = factory.SubFactory(LinkedUserFactory)
    app = factory.SelfAttribute("user.app")
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(minutes=10))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        code = crypto.new_secret()
        kwargs["code_digest"] = crypto.digest(code)
        auth_code = super()._create(model_class, *args, **kwargs)
        auth_code.code = code
        return auth_code


class DeviceFactory(factory.django.DjangoModelFactory):
    """An inactive device by default (the partial unique constraint allows one active)."""

    class Meta:
        model = Device

    user = factory.SubFactory(LinkedUserFactory)
    app = factory.SelfAttribute("user.app")
    install_id = factory.Sequence(lambda n: f"install-{n:08d}")
    platform = Platform.ANDROID
    form_factor = FormFactor.PHONE
    model = "Pixel 9"
    os_version = "15"
    app_version = "1.0.0"
    sdk_version = "2.3.0"
    is_active = False
    inactive_reason = "REPLACED_BY_NEWER_DEVICE"


class DeletionRequestFactory(factory.django.DjangoModelFactory):
    """A request whose user is already purged."""

    class Meta:
        model = DeletionRequest

    app = factory.SubFactory(AppFactory)
    deleted_user_id = factory.LazyFunction(crypto.public_id)
    status = "done"


class PersonFactory(factory.django.DjangoModelFactory):
    """A console person: signs in by e-mail (also the username), never staff."""

    class Meta:
        model = User
        django_get_or_create = ("username",)

    email = factory.Sequence(lambda n: f"person{n}@customer.example")
    username = factory.SelfAttribute("email")
    password = factory.django.Password("a long console passphrase")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(PersonFactory)
    app = factory.SubFactory(AppFactory)
    role = Role.OWNER
