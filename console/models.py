"""The people of a customer company and what they may do in its app's console."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_otp.models import Device

from accounts.models import App


class Role(models.TextChoices):
    """Each role can do what the one before it can, and more."""

    VIEWER = "viewer"
    DEVELOPER = "developer"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether a member with this role may do what `needed` may."""
        return self.rank >= Role(needed).rank


class Membership(models.Model):
    """A person's role in one app. A person may belong to several apps; an app always keeps
    at least one owner (enforced by the team services under a lock on the app's members)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_memberships"
    )
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="console_memberships")
    role = models.CharField(max_length=16, choices=Role)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "app"], name="one_membership_per_app"),
        ]
        indexes = [models.Index(fields=["app", "role"], name="membership_app_role")]

    def __str__(self) -> str:
        return f"{self.role} of {self.app_id}"

    def allows(self, needed: Role) -> bool:
        return Role(self.role).allows(needed)


class Authenticator(Device):
    """A person's TOTP authenticator app (RFC 6238, django-otp's algorithm in
    `django_otp.oath`). Unlike django-otp's own TOTPDevice, the shared key is stored sealed
    (Fernet under a key derived from SECRET_KEY, see `console.services.two_factor`): a copy of
    the database alone does not yield the codes. django-otp's middleware finds this model by
    its persistent id, so a session it confirmed is `is_verified()` like any other."""

    sealed_key = models.TextField()
    last_t = models.BigIntegerField(
        default=-1, help_text="The last time step accepted: each code is accepted once."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)


class RecoveryCode(models.Model):
    """One of the ten codes that stand in for the authenticator once each. Only a keyed
    digest is kept; the codes themselves are shown once, when made."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_recovery_codes"
    )
    digest = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "digest"], name="one_recovery_code_digest")
        ]

    def __str__(self) -> str:
        return f"recovery code of user {self.user_id}"


class Invitation(models.Model):
    """An owner's (or staff's) invitation of an e-mail address to an app with a role. The
    link's token is kept as a digest only; it works once, until `expires_at`."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="console_invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=16, choices=Role)
    token_digest = models.CharField(max_length=64, unique=True)
    invited_by = models.CharField(max_length=254, help_text="Who invited: an e-mail or 'staff'.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["app", "expires_at"], name="invitation_app_expiry")]

    def __str__(self) -> str:
        return f"invitation of {self.email} as {self.role}"


class SignInFailure(models.Model):
    """One failed console sign-in (wrong password or wrong code), counted against the account
    and against the client address: both `key`s are keyed digests, so neither what was typed
    as an e-mail nor the address is kept in clear. Each new failure deletes every row older than
    the lockout window, so the table holds about one window's failures (and the beat's sweep
    takes what is left). An attempt under way has its rows already, written before its check
    and deleted once it passed (`console.services.lockout.begin`). The failure that reaches the
    limit `locks`: the lock lasts the window from it."""

    key = models.CharField(max_length=64)
    failed_at = models.DateTimeField(default=timezone.now)
    locks = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["key", "failed_at"], name="signin_failure_key_time"),
            models.Index(fields=["failed_at"], name="signin_failure_time"),
        ]

    def __str__(self) -> str:
        return f"sign-in failure at {self.failed_at}"


class PersonSession(models.Model):
    """The sessions a person opened in the console, so that "sign out everywhere" ends them
    without reading every session of the site."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_sessions"
    )
    session_key = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"console session of user {self.user_id}"
