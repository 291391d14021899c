"""Console people as the sign-in pages see them: an enrolled authenticator whose codes the
test computes like the person's app, and the two sign-in steps through the test client."""

from __future__ import annotations

import base64
import time

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP

from console.models import Authenticator
from console.services import two_factor

PASSWORD = "a long console passphrase"  # tests.factories.PersonFactory's


def enrolled(user: User) -> Authenticator:
    """The person's confirmed authenticator, set up if they have none."""
    device = two_factor.confirmed_authenticator(user)
    if device is None:
        device = two_factor.pending_authenticator(user=user, device_id=None)
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return device


def code_for_key(key: bytes, steps_ahead: int = 0) -> str:
    totp = TOTP(key, two_factor.STEP, 0, two_factor.DIGITS, 0)
    totp.time = time.time() + steps_ahead * two_factor.STEP
    return f"{totp.token():06d}"


def code(device: Authenticator, steps_ahead: int = 0) -> str:
    """What the person's app shows now (or `steps_ahead` steps of 30 s later)."""
    return code_for_key(two_factor.shared_key(device), steps_ahead)


def code_from_secret(secret: str, steps_ahead: int = 0) -> str:
    """What an app shows for the key typed in from the enrolment page."""
    cleaned = secret.replace(" ", "")
    return code_for_key(base64.b32decode(cleaned + "=" * (-len(cleaned) % 8)), steps_ahead)


def password_step(client: Client, email: str, password: str = PASSWORD, **extra: str):
    return client.post(reverse("console:sign_in"), {"email": email, "password": password, **extra})


def code_step(client: Client, value: str, **extra: str):
    return client.post(reverse("console:second_factor"), {"code": value, **extra})


def signed_in(user: User, steps_ahead: int = 0) -> Client:
    """A client through both steps of the console's sign-in."""
    device = enrolled(user)
    client = Client()
    assert password_step(client, user.email).status_code == 302
    response = code_step(client, code(device, steps_ahead))
    assert response.status_code == 302, response.content
    return client
