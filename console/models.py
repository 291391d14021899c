"""The people of a customer company and what they may do in its app's console."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

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
