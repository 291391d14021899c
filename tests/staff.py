"""Staff sessions as the admin accepts them (password and authenticator), and codes of an
authenticator computed the way the member's app computes them."""

from __future__ import annotations

import time

from django.contrib.auth.models import User
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


def authenticator(user: User) -> TOTPDevice:
    """The member's confirmed authenticator, set up if they have none."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def code(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The code the app shows now, or `steps_ahead` time steps (30 s) later: a code is
    accepted once, so a second sign-in within the same step uses the next one (the device
    tolerates one step of clock drift)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def signed_in(user: User) -> Client:
    """A client whose session signed in with the password and was confirmed by the member's
    authenticator, as after the admin's sign-in form."""
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = authenticator(user).persistent_id
    session.save()
    return client
