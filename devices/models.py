"""SDK installations of a user; at most one of a user's devices is active at any instant."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import App, LinkedUser


class Platform(models.TextChoices):
    ANDROID = "android", "Android"
    IOS = "ios", "iOS"


class FormFactor(models.TextChoices):
    PHONE = "phone"
    TABLET = "tablet"


class InactiveReason(models.TextChoices):
    REPLACED_BY_NEWER_DEVICE = "REPLACED_BY_NEWER_DEVICE", "Replaced by a newer device"
    PHONE_PREFERRED = "PHONE_PREFERRED", "A phone of the user is active; phones come first"
    RESET = "RESET", "Reset by the SDK (log out)"
    DEACTIVATED_BY_SUPPORT = "DEACTIVATED_BY_SUPPORT", "Deactivated by support"
    USER_DELETED = "USER_DELETED", "The user was deleted"


class Device(models.Model):
    """One SDK installation (`install_id`) of one user.

    The device's current access token lives here as a digest: one credential per device,
    so refreshing or resetting voids the previous one by overwriting it.
    """

    # No index of its own: `one_device_per_install` (app, install_id) serves lookups by app.
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="devices", db_index=False)
    user = models.ForeignKey(LinkedUser, on_delete=models.CASCADE, related_name="devices")
    install_id = models.CharField(max_length=64)
    platform = models.CharField(max_length=16, choices=Platform)
    form_factor = models.CharField(max_length=16, choices=FormFactor)
    model = models.CharField(max_length=128, blank=True, default="")
    os_version = models.CharField(max_length=128, blank=True, default="")
    app_version = models.CharField(max_length=128, blank=True, default="")
    sdk_version = models.CharField(max_length=128, blank=True, default="")
    is_active = models.BooleanField(default=False)
    # null, not "", for the active device: the contract shows `"inactive_reason": null`.
    inactive_reason = models.CharField(  # noqa: DJ001
        max_length=32, choices=InactiveReason, null=True, blank=True
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Unique by a constraint (Meta), not `unique=True`, which on PostgreSQL would add a
    # `varchar_pattern_ops` index no lookup uses to every token write. NULL, not "", for a
    # device without a token: many of them, and unique.
    access_token_digest = models.CharField(  # noqa: DJ001
        max_length=64, null=True, blank=True, editable=False
    )
    access_token_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [
            ("deactivate_device", "Can deactivate devices"),
            ("activate_device", "Can make a device the active one"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["app", "install_id"], name="one_device_per_install"),
            models.UniqueConstraint(
                fields=["access_token_digest"], name="devices_device_access_token_digest_key"
            ),
            models.UniqueConstraint(
                fields=["user"], condition=Q(is_active=True), name="one_active_device_per_user"
            ),
            models.CheckConstraint(
                condition=Q(is_active=True, inactive_reason__isnull=True)
                | Q(is_active=False, inactive_reason__isnull=False),
                name="inactive_device_has_reason",
            ),
        ]
        indexes = [
            # Pattern ops: serve the admin's prefix searches (LIKE 'abc%') whatever the
            # database collation, as well as equality.
            models.Index(
                fields=["install_id"],
                name="device_install_id_like",
                opclasses=["varchar_pattern_ops"],
            ),
            models.Index(
                fields=["model"], name="device_model_like", opclasses=["varchar_pattern_ops"]
            ),
            # The count of active devices by kind, of one app (the console's overview) or of
            # all (the staff dashboard), from the index alone.
            models.Index(
                fields=["app", "platform", "form_factor"],
                condition=Q(is_active=True),
                name="device_app_active_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.install_id} ({self.get_platform_display()} {self.form_factor})"
