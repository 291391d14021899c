"""Tenants (apps), their API keys, the users they link and the codes that link them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts import crypto
from portal.text import validate_plain_text


class Scope(models.TextChoices):
    """Shown as they are written in the API documentation and in `required_scopes`."""

    USER_LINK = "user.link", "user.link"
    USER_READ = "user.read", "user.read"
    USER_DELETE = "user.delete", "user.delete"


class App(models.Model):
    """One customer application: owns its keys, users and devices."""

    app_id = models.CharField(max_length=24, unique=True, default=crypto.public_id, editable=False)
    name = models.CharField(max_length=200, validators=[validate_plain_text])
    is_active = models.BooleanField(default=True)
    contact_emails = models.JSONField(default=list, blank=True)
    sdk_config = models.JSONField(default=dict, blank=True)
    # The event types some enabled webhook endpoint of the app wants, space-separated; blank
    # for an app without one. Kept by the events app's endpoint services in the transaction
    # that changes an endpoint, and read with the app by the key check and redemption, so a
    # service knows whether to write an outbox row without asking (see accounts.lifecycle).
    webhook_events = models.CharField(max_length=512, blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.app_id})"


class ApiKey(models.Model):
    """A scoped server-to-server credential `<key_id>.<secret>`; only the digest is stored."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="api_keys")
    key_id = models.CharField(max_length=16, unique=True, default=crypto.key_id, editable=False)
    secret_digest = models.CharField(max_length=64, editable=False)
    name = models.CharField(max_length=200)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        permissions = [
            ("revoke_apikey", "Can revoke API keys"),
            ("rotate_apikey", "Can rotate API keys"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="apikey_expires_at")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id})"


class ApiKeyNotice(models.Model):
    """A reminder sent (`14d`, `7d`) or an expiry recorded (`expired`) for a key, once."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=16)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "kind"], name="one_notice_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.kind} notice for {self.api_key_id}"


class UserStatus(models.TextChoices):
    PENDING = "pending"
    ACTIVE = "active"
    DELETED = "deleted"


class LinkedUser(models.Model):
    """The platform user linked to one external id of one app.

    A deleted user keeps its row until the purge; the uniqueness of (app, external_id) ignores
    deleted rows, so the same external id can be linked again to a brand-new user at once.
    """

    user_id = models.CharField(max_length=24, unique=True, default=crypto.public_id, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="users")
    external_id = models.CharField(max_length=256)
    status = models.CharField(max_length=16, choices=UserStatus, default=UserStatus.PENDING)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "user"
        permissions = [
            ("disable_linkeduser", "Can disable and enable users"),
            ("erase_linkeduser", "Can delete users through the deletion service"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["app", "external_id"],
                condition=~Q(status="deleted"),
                name="one_live_user_per_external_id",
            ),
        ]
        indexes = [
            # Pattern ops: serves the admin's prefix search (LIKE 'abc%') whatever the
            # database collation, as well as equality.
            models.Index(
                fields=["external_id"],
                name="linkeduser_external_id_like",
                opclasses=["varchar_pattern_ops"],
            )
        ]

    def __str__(self) -> str:
        return self.user_id

    @property
    def is_disabled(self) -> bool:
        """Disabled by support (or the customer's console): refused whatever its status."""
        return self.disabled_at is not None

    @property
    def is_usable(self) -> bool:
        return self.status != UserStatus.DELETED and not self.is_disabled


class AuthCodeStatus(models.TextChoices):
    ISSUED = "issued"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    VOID = "void"


class AuthCode(models.Model):
    """A single-use code that lets the SDK create or restore its user; only the digest is kept.

    `redeemed_install_id` names the device that used it (devices are keyed by install id
    within an app), which is also what makes a retry by the same install recognisable.
    """

    # Unique by a constraint rather than `unique=True`: on PostgreSQL the latter adds a second,
    # pattern-ops index that no query uses and every insert and sweep pays for.
    code_digest = models.CharField(max_length=64, editable=False)
    # No index on app or api_key: no query looks codes up by either, and every insert and every
    # change of status would pay for them. Apps and keys are revoked, never deleted (nothing in
    # the admin or the commands can): deleting one would read the whole code table.
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+", db_index=False)
    user = models.ForeignKey(
        LinkedUser,
        on_delete=models.CASCADE,
        related_name="auth_codes",
        db_index=False,  # authcode_user_recent (user, -created_at) serves every lookup by user
    )
    api_key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="auth_codes",
        db_index=False,
    )
    status = models.CharField(max_length=16, choices=AuthCodeStatus, default=AuthCodeStatus.ISSUED)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    redeemed_at = models.DateTimeField(null=True, blank=True)
    redeemed_install_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        verbose_name = "authentication code"
        constraints = [
            models.UniqueConstraint(fields=["code_digest"], name="authcode_code_digest_unique")
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="authcode_expires_at"),
            models.Index(
                fields=["expires_at"],
                condition=Q(status="issued"),
                name="authcode_issued_expiry",
            ),
            models.Index(fields=["user", "-created_at"], name="authcode_user_recent"),
        ]

    def __str__(self) -> str:
        return f"code {self.pk} for {self.user_id}"


class DeletionStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"


class DeletionRequest(models.Model):
    """A customer's request to erase a user; outlives the user's rows so a repeated DELETE
    answers with the same request id and the purge can be audited."""

    request_id = models.CharField(
        max_length=24, unique=True, default=crypto.public_id, editable=False
    )
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="deletion_requests")
    user = models.OneToOneField(
        LinkedUser,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deletion_request",
    )
    deleted_user_id = models.CharField(max_length=24, unique=True)
    # `crypto.external_id_digest` of the deleted user's external id, never the id itself: once
    # the user is purged, support can still answer "was alice deleted, and when?" by searching
    # for it. Empty for requests made before it was kept.
    external_id_digest = models.CharField(  # noqa: DJ001
        max_length=64, null=True, blank=True, editable=False
    )
    requested_by_key_id = models.CharField(max_length=16, blank=True, default="")
    status = models.CharField(max_length=16, choices=DeletionStatus, default=DeletionStatus.PENDING)
    requested_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["requested_at"],
                condition=Q(status="pending"),
                name="deletion_pending",
            ),
            models.Index(fields=["external_id_digest"], name="deletion_external_id"),
        ]

    def __str__(self) -> str:
        return f"deletion {self.request_id} of {self.deleted_user_id}"


class ActorType(models.TextChoices):
    STAFF = "staff"
    API_KEY = "api_key"
    DEVICE = "device"
    SYSTEM = "system"
    OPERATOR = "operator"
    CONSOLE = "console", "Console member"


class AuditAction(models.TextChoices):
    KEY_CREATED = "key.created"
    KEY_ROTATED = "key.rotated"
    KEY_REVOKED = "key.revoked"
    KEY_EXPIRED = "key.expired"
    USER_CREATED = "user.created"
    USER_RESTORED = "user.restored"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_DELETED = "user.deleted"
    USER_PURGED = "user.purged"
    DEVICE_ACTIVATED = "device.activated"
    DEVICE_DEACTIVATED = "device.deactivated"
    APP_UPDATED = "app.updated"
    STAFF_SIGNED_IN = "staff.signed_in", "Staff Signed In"
    STAFF_SIGNED_OUT = "staff.signed_out", "Staff Signed Out"
    STAFF_SIGN_IN_FAILED = "staff.sign_in_failed", "Staff Sign-In Failed"
    STAFF_2FA_ENROLLED = "staff.2fa_enrolled", "Staff Two-Factor Enrolled"
    STAFF_2FA_RESET = "staff.2fa_reset", "Staff Two-Factor Reset"
    # The customer console (console/): its people's sign-in and account, and its team.
    CONSOLE_SIGNED_IN = "console.signed_in", "Console Signed In"
    CONSOLE_SIGNED_OUT = "console.signed_out", "Console Signed Out"
    CONSOLE_SIGN_IN_FAILED = "console.sign_in_failed", "Console Sign-In Failed"
    CONSOLE_LOCKED_OUT = "console.locked_out", "Console Locked Out"
    CONSOLE_2FA_ENROLLED = "console.2fa_enrolled", "Console Two-Factor Enrolled"
    CONSOLE_2FA_RESET = "console.2fa_reset", "Console Two-Factor Reset"
    CONSOLE_RECOVERY_USED = "console.recovery_used", "Console Recovery Code Used"
    CONSOLE_RECOVERY_RENEWED = "console.recovery_renewed", "Console Recovery Codes Renewed"
    CONSOLE_PASSWORD_CHANGED = "console.password_changed", "Console Password Changed"
    CONSOLE_SESSIONS_ENDED = "console.sessions_ended", "Console Signed Out Everywhere"
    TEAM_INVITED = "team.invited"
    TEAM_INVITATION_REVOKED = "team.invitation_revoked"
    TEAM_JOINED = "team.joined"
    TEAM_ROLE_CHANGED = "team.role_changed"
    TEAM_REMOVED = "team.removed"
    TEAM_LEFT = "team.left"
    # Webhooks (events/): endpoints and their deliveries.
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_UPDATED = "webhook.updated"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated"  # noqa: S105 (an action name)
    WEBHOOK_DISABLED = "webhook.disabled"
    WEBHOOK_ENABLED = "webhook.enabled"
    WEBHOOK_AUTO_DISABLED = "webhook.auto_disabled", "Webhook Disabled After Failing"
    WEBHOOK_REDELIVERED = "webhook.redelivered"
    WEBHOOK_TEST_SENT = "webhook.test_sent", "Webhook Test Event Sent"


class AuditEvent(models.Model):
    """Who did what to which object, and when. Written by the services in the same
    transaction as the change; never edited. Refers to objects by public ids only, so it
    outlives purges without keeping personal data."""

    occurred_at = models.DateTimeField(default=timezone.now)
    # Indexed by audit_app_recent, which starts with it.
    app = models.ForeignKey(
        App, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    actor_type = models.CharField(max_length=16, choices=ActorType)
    actor = models.CharField(max_length=254, blank=True, default="")  # an e-mail for CONSOLE
    action = models.CharField(max_length=32, choices=AuditAction)
    target_type = models.CharField(max_length=16)
    target_id = models.CharField(max_length=64)
    user_ref = models.CharField(
        max_length=24, blank=True, default="", help_text="user_id of the user concerned"
    )
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["user_ref", "-occurred_at"], name="audit_user_timeline"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
            models.Index(fields=["-occurred_at"], name="audit_recent"),
            # The admin's filters, in the list's order: without them a rare action or actor
            # type is found by reading the whole table, newest first.
            models.Index(fields=["action", "-occurred_at", "-id"], name="audit_action_recent"),
            models.Index(fields=["actor_type", "-occurred_at", "-id"], name="audit_actor_recent"),
            # The console's audit log of one app, newest first, unfiltered or by action or by
            # actor: each a range of one index read in the list's order (keyset pages). The
            # filtered ones leave out the devices' own events (redemptions, resets), the bulk
            # of the table: redemption writes no more index entries than before, and those
            # frequent actions are found at once by audit_app_recent.
            models.Index(fields=["app", "-occurred_at", "-id"], name="audit_app_recent"),
            models.Index(
                fields=["app", "action", "-occurred_at", "-id"],
                condition=~Q(actor_type="device"),
                name="audit_app_action",
            ),
            models.Index(
                fields=["app", "actor", "-occurred_at", "-id"],
                condition=~Q(actor_type="device"),
                name="audit_app_actor",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type} {self.target_id}"


class DailyActivity(models.Model):
    """Per app and UTC day: codes issued and redeemed, users new and restored (first
    redemptions, `user.created` / `user.restored`), for the console's overview. Codes are
    purged a few days after they expire and have no index on their app, so counting them
    when a page asks is not possible; `services.roll_up_activity`, run by the code sweep
    before it purges, adds up codes once they can no longer change (expired) and the events
    of the same period. Nothing on the issuance or redemption path writes here."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    codes_issued = models.BigIntegerField(default=0)
    codes_redeemed = models.BigIntegerField(default=0)
    users_new = models.BigIntegerField(default=0)
    users_restored = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "daily activity"
        constraints = [
            models.UniqueConstraint(fields=["app", "day"], name="one_activity_row_per_app_day")
        ]

    def __str__(self) -> str:
        return f"activity of {self.app_id} on {self.day}"


class ActivityMark(models.Model):
    """One row: `DailyActivity` holds exactly the codes that expired, and the events that
    occurred, up to `counted_until`; readers count the rest from the tables themselves."""

    counted_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"activity counted until {self.counted_until}"
