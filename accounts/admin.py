"""Staff admin of apps, API keys, users, codes, deletion requests and the audit trail.

Every write goes through `accounts.services`; no page shows a secret or a digest. The user
admin is defined here and registered by `devices.admin`, which adds the user's devices
(accounts never imports devices).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as AuthUserAdmin
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Count, Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts import crypto, services
from accounts.admin_actions import (
    Created,
    Outcome,
    StaffAction,
    StaffActionsMixin,
    secret_add_view,
)
from accounts.admin_base import (
    TIMELINE_EVENTS,
    AuditHistoryMixin,
    StaffAdmin,
    admin_change_url,
    app_name,
    clipped,
    staff_actor,
    when,
)
from accounts.admin_forms import (
    AppForm,
    NewApiKeyForm,
    ReasonForm,
    RotationForm,
)
from accounts.audit import Actor
from accounts.models import (
    ApiKey,
    App,
    AuditEvent,
    AuthCode,
    AuthCodeStatus,
    DeletionRequest,
    LinkedUser,
)
from accounts.selectors import (
    KeyStatus,
    api_key_status,
    api_keys_with_rotation,
    how_disabled,
    key_status_filter,
    recent_codes,
)

RECENT_CODES = 20
KEYS_SHOWN = 20


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(status.value, status.value) for status in KeyStatus]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in {status.value for status in KeyStatus}:
            return queryset.filter(key_status_filter(KeyStatus(self.value()), timezone.now()))
        return queryset


@admin.register(App)
class AppAdmin(StaffAdmin):
    form = AppForm
    list_display = ["display_name", "app_id", "is_active", "created_at"]
    search_fields = ["app_id__hexid", "name__icontains"]  # a few hundred tenants at most
    search_help_text = "An app id, or part of an app's name (both in any case)."
    fields = [
        "name",
        "app_id",
        "is_active",
        "contact_emails",
        "sdk_config",
        "created_at",
        "key_summary",
    ]
    readonly_fields = ["app_id", "created_at", "key_summary"]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm("accounts.change_app")

    def audit_timeline(self, app: App) -> tuple[Q, str]:
        return Q(target_type="app", target_id=app.app_id), app.app_id

    def save_model(self, request: HttpRequest, obj: App, form: AppForm, change: bool) -> None:
        services.update_app(
            app=obj,
            actor=staff_actor(request),
            **{field: form.cleaned_data[field] for field in AppForm.Meta.fields},
        )

    @admin.display(description="name")
    def display_name(self, app: App) -> str:
        return clipped(app.name, wide=True)

    @admin.display(description="API keys")
    def key_summary(self, app: App) -> str:
        now = timezone.now()
        keys = api_keys_with_rotation(ApiKey.objects.filter(app=app))
        counts = keys.aggregate(
            **{s.name: Count("pk", filter=key_status_filter(s, now)) for s in KeyStatus}
        )
        summary = ", ".join(f"{counts[s.name]} {s.value}" for s in KeyStatus)
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    admin_change_url(key),
                    key.key_id,
                    key.name,
                    api_key_status(key, rotated=key.rotated, now=now),
                    when(key.expires_at),
                )
                for key in keys[:KEYS_SHOWN]
            ),
        )
        all_keys = reverse("admin:accounts_apikey_changelist") + f"?app__id__exact={app.pk}"
        return format_html(
            '<p>{} (<a href="{}">all keys of this app</a>)</p>'
            "<table><tr><th>key id</th><th>name</th><th>status</th><th>expires</th></tr>{}</table>",
            summary,
            all_keys,
            rows,
        )


def _revoke(key: ApiKey, actor: Actor, data: dict) -> Outcome:
    services.revoke_api_key(api_key=key, actor=actor)
    return Outcome(f"Key {key.key_id} is revoked.")


def _revoke_consequence(key: ApiKey) -> str:
    return "Refused at once, for good: every request with this key answers 401 API_KEY_REVOKED."


def _rotate(key: ApiKey, actor: Actor, data: dict) -> Outcome:
    rotation = services.rotate_api_key(
        api_key=key, grace=dt.timedelta(hours=data["grace_hours"]), actor=actor
    )
    new = rotation.new
    return Outcome(
        f"Key {key.key_id} rotated to {new.api_key.key_id}; the old key works until "
        f"{rotation.old_key.expires_at:%Y-%m-%d %H:%M} UTC.",
        shown_once=(f"New key {new.api_key.key_id} ({key.name}) of {key.app}", new.full_key),
    )


def _rotate_consequence(key: ApiKey) -> str:
    return (
        "A new key with the same app, name and scopes is created and shown once. This key keeps "
        "working for the grace period below (never past its own expiry), then expires."
    )


@admin.register(ApiKey)
class ApiKeyAdmin(StaffActionsMixin, StaffAdmin):
    list_display = [
        "key_id",
        "status",
        "expires_at",
        "last_used_at",
        "key_name",
        app_name,
        "scope_list",
    ]
    list_select_related = ["app"]
    sortable_by = ["expires_at"]
    list_filter = [KeyStatusFilter, "app"]
    search_fields = ["key_id__hexprefix"]
    search_help_text = "A key id, or the start of one (in any case)."
    fields = [
        "key_id",
        "app",
        "name",
        "scope_list",
        "status",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "rotated_from",
        "successor",
    ]
    readonly_fields = fields
    staff_actions = (
        StaffAction(
            name="revoke",
            label="Revoke",
            permission="accounts.revoke_apikey",
            perform=_revoke,
            check=services.check_revocable,
            consequence=_revoke_consequence,
        ),
        StaffAction(
            name="rotate",
            label="Rotate",
            permission="accounts.rotate_apikey",
            perform=_rotate,
            check=services.check_rotatable,
            consequence=_rotate_consequence,
            form=RotationForm,
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return api_keys_with_rotation(super().get_queryset(request)).select_related("rotated_from")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.add_apikey")

    def audit_timeline(self, key: ApiKey) -> tuple[Q, str]:
        return Q(target_type="api_key", target_id=key.key_id), key.key_id

    @admin.display(description="name")
    def key_name(self, key: ApiKey) -> str:
        return clipped(key.name)

    @admin.display(description="scopes")
    def scope_list(self, key: ApiKey) -> str:
        return format_html('<span class="wraps">{}</span>', ", ".join(key.scopes))

    @admin.display(description="status")
    def status(self, key: ApiKey) -> str:
        return api_key_status(key, rotated=key.rotated)

    @admin.display(description="rotated to")
    def successor(self, key: ApiKey) -> str:
        new = ApiKey.objects.filter(rotated_from=key).only("pk", "key_id").first()
        if new is None:
            return "-"
        return format_html('<a href="{}">{}</a>', admin_change_url(new), new.key_id)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """Creates the key through the service and shows it in the answer to this POST only."""

        def create(data: dict, actor: Actor) -> Created:
            key = services.create_api_key(
                app=data["app"],
                name=data["name"],
                scopes=data["scopes"],
                expires_in_days=data["expires_in_days"],
                actor=actor,
            )
            self.message_user(request, f"Key {key.api_key.key_id} created.")
            what = f"API key {key.api_key.key_id} ({key.api_key.name}) of {key.api_key.app}"
            return Created(key.api_key, what, key.full_key)

        return secret_add_view(
            request,
            self,
            form=NewApiKeyForm(request.POST or None, initial={"app": request.GET.get("app")}),
            create=create,
            resent="This form was already sent: the key it created was shown once and cannot "
            "be shown again. Revoke it if it was not copied.",
            shown_once_note="The full key is shown once, on the next page; only its digest is "
            "kept.",
            submit_label="Create the key",
        )


class DisabledFilter(admin.SimpleListFilter):
    title = "disabled"
    parameter_name = "disabled"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(disabled_at__isnull=self.value() == "no")
        return queryset


def _set_disabled(disabled: bool) -> Callable[[LinkedUser, Actor, dict], Outcome]:
    def perform(user: LinkedUser, actor: Actor, data: dict) -> Outcome:
        services.set_user_disabled(
            user=user, disabled=disabled, actor=actor, reason=data.get("reason", "")
        )
        return Outcome(f"User {user.user_id} is {'disabled' if disabled else 'enabled'}.")

    return perform


def _disable_consequence(user: LinkedUser) -> str:
    return (
        "Code redemptions and the access tokens of the user's devices are refused until the "
        "user is enabled again. Nothing is lost."
    )


def _enable_consequence(user: LinkedUser) -> str:
    return "Redemptions and access tokens work again."


def _delete(user: LinkedUser, actor: Actor, data: dict) -> Outcome:
    deletion = services.request_user_deletion(user=user, actor=actor)
    return Outcome(
        f"User {user.user_id} is deleted: it can no longer be used, and its data is purged "
        f"in the background. This deletion request ({deletion.request_id}) stays, with the "
        "purge's status.",
        shown_on=deletion,
    )


def _delete_consequence(user: LinkedUser) -> str:
    return (
        "Irreversible. At once the user can no longer be used: devices inactive, codes and "
        "access tokens void. Its data is then purged; the external id can be linked again, "
        "to a new user."
    )


class LinkedUserAdmin(StaffActionsMixin, StaffAdmin):
    """The story of one user: who they are, their devices (added by `devices.admin`), their
    last codes and their audit timeline, each one bounded indexed query."""

    list_display = ["user_id", "external_id_cell", "state", app_name, "created_at"]
    list_select_related = ["app"]
    list_filter = ["app", "status", DisabledFilter]
    search_fields = ["user_id__hexid", "external_id__prefix"]
    search_help_text = (
        "A user id (in any case), or an external id or its start, in its exact case: "
        '"Alice" and "alice" are two users.'
    )
    fields = [
        "user_id",
        "external_id",
        "app",
        "state",
        "disabled_at",
        "created_at",
        "deleted_at",
        "deletion",
    ]
    readonly_fields = fields
    change_form_template = "admin/accounts/linkeduser/change_form.html"
    staff_actions = (
        StaffAction(
            name="disable",
            label="Disable",
            permission="accounts.disable_linkeduser",
            perform=_set_disabled(True),
            check=partial(services.check_disable, disabled=True),
            consequence=_disable_consequence,
            form=ReasonForm,
        ),
        StaffAction(
            name="enable",
            label="Enable",
            permission="accounts.disable_linkeduser",
            perform=_set_disabled(False),
            check=partial(services.check_disable, disabled=False),
            consequence=_enable_consequence,
        ),
        StaffAction(
            name="delete",
            label="Delete",
            permission="accounts.erase_linkeduser",
            perform=_delete,
            check=services.check_deletable,
            consequence=_delete_consequence,
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("app")

    @admin.display(description="status")
    def state(self, user: LinkedUser) -> str:
        """The status and, in the same cell, whether the user is disabled: a disabled user
        keeps its status ("active") but is refused, and must not read as plainly active."""
        if not user.is_disabled:
            return user.get_status_display()
        return format_html(
            '<strong class="user-disabled" title="disabled since {}">{}, disabled</strong>',
            when(user.disabled_at),
            user.get_status_display(),
        )

    @admin.display(description="external id")
    def external_id_cell(self, user: LinkedUser) -> str:
        return clipped(user.external_id, wide=True)

    def audit_timeline(self, user: LinkedUser) -> tuple[Q, str]:
        """The user's whole story: its own events and those of its devices."""
        return Q(user_ref=user.user_id), user.user_id

    @admin.display(description="deletion request")
    def deletion(self, user: LinkedUser) -> str:
        try:
            deletion = user.deletion_request
        except ObjectDoesNotExist:
            return "-"
        return format_html('<a href="{}">{}</a>', admin_change_url(deletion), deletion)

    def render_change_form(
        self, request: HttpRequest, context: dict, *args: Any, obj: Model | None = None, **kw: Any
    ) -> HttpResponse:
        if obj is not None:
            context.update(self.user_page_context(request, obj))
        return super().render_change_form(request, context, *args, obj=obj, **kw)

    def user_page_context(self, request: HttpRequest, user: LinkedUser) -> dict[str, Any]:
        context: dict[str, Any] = {}
        if user.is_disabled:
            context["disabled_banner"] = how_disabled(
                user, with_who=request.user.has_perm("accounts.view_auditevent")
            )
        if request.user.has_perm("accounts.view_authcode"):
            context["codes"] = recent_codes(
                user,
                limit=RECENT_CODES,
                more=("pk", "redeemed_install_id", "api_key_id", "api_key__key_id"),
            )
        if request.user.has_perm("accounts.view_auditevent"):
            context["timeline"] = AuditEvent.objects.filter(user_ref=user.user_id).order_by(
                "-occurred_at", "-id"
            )[:TIMELINE_EVENTS]
            context["timeline_url"] = (
                reverse("admin:accounts_auditevent_changelist") + f"?q={user.user_id}"
            )
        return context


@admin.register(AuthCode)
class AuthCodeAdmin(StaffAdmin):
    fields = [
        "user",
        "app",
        "api_key",
        "state",
        "created_at",
        "expires_at",
        "redeemed_at",
        "redeemed_install_id",
    ]
    readonly_fields = fields
    list_display = [
        "id",
        "state",
        "user",
        "created_at",
        "expires_at",
        "redeeming_install",
        app_name,
    ]
    list_select_related = ["user", "app", "api_key"]
    sortable_by = ["expires_at"]
    list_filter = ["status"]
    search_fields = ["user__user_id__hexid"]
    search_help_text = "The user id of the codes' user (in any case)."

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user", "app", "api_key")

    @admin.display(description="status")
    def state(self, code: AuthCode) -> str:
        if code.status == AuthCodeStatus.ISSUED and code.expires_at <= timezone.now():
            return AuthCodeStatus.EXPIRED.label
        return code.get_status_display()

    @admin.display(description="redeemed by")
    def redeeming_install(self, code: AuthCode) -> str:
        return clipped(code.redeemed_install_id) if code.redeemed_install_id else "-"


@admin.register(DeletionRequest)
class DeletionRequestAdmin(StaffAdmin):
    list_display = [
        "request_id",
        "deleted_user_id",
        "status",
        "requested_at",
        "completed_at",
        app_name,
    ]
    list_select_related = ["app"]
    list_filter = ["status"]
    search_fields = ["request_id__hexid", "deleted_user_id__hexid"]
    search_help_text = (
        "A request id or the user id of the deleted user (in any case), or the user's whole "
        "external id, in its exact case (the request keeps a keyed digest of it, not the id)."
    )
    fields = [
        "request_id",
        "deleted_user_id",
        "user",
        "app",
        "status",
        "requested_by_key_id",
        "requested_at",
        "completed_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("app", "user")

    def search_filter(self, term: str) -> Q:
        """Also by external id, through its digest (by the deletion_external_id index): "was
        alice deleted, and when?" has an answer after the purge."""
        digests = crypto.external_id_digests(term)
        return super().search_filter(term) | Q(external_id_digest__in=digests)

    def audit_timeline(self, deletion: DeletionRequest) -> tuple[Q, str]:
        """The deleted user's story, its deletion and purge included."""
        return Q(user_ref=deletion.deleted_user_id), deletion.deleted_user_id


AUDIT_TARGET_TYPES = ("api_key", "app", "device", "staff", "user")
"""The target types the services write; searching by target id names them all, so that the
(target_type, target_id) index serves the search."""


@admin.register(AuditEvent)
class AuditEventAdmin(StaffAdmin):
    list_display = [
        "occurred_at",
        "action",
        "actor_label",
        "target",
        "user_ref",
        app_name,
        "details_cell",
    ]
    list_select_related = ["app"]
    sortable_by = ["occurred_at"]
    list_filter = ["action", "actor_type"]
    search_fields = ["user_ref__hexid", "target_id__exact"]
    search_help_text = (
        "A user id (the user's whole timeline, in any case), or exactly a key id, an install "
        "id or a staff username."
    )
    fields = [
        "occurred_at",
        "action",
        "actor_type",
        "actor",
        "app",
        "target_type",
        "target_id",
        "user_ref",
        "details",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("app")

    def search_filter(self, term: str) -> Q:
        return Q(user_ref__hexid=term) | Q(target_type__in=AUDIT_TARGET_TYPES, target_id=term)

    @admin.display(description="actor")
    def actor_label(self, event: AuditEvent) -> str:
        return clipped(f"{event.get_actor_type_display()} {event.actor}".strip())

    @admin.display(description="object")
    def target(self, event: AuditEvent) -> str:
        """Its id: the action names its type ("Device Deactivated")."""
        return clipped(event.target_id, f"{event.target_type} {event.target_id}")

    @admin.display(description="details")
    def details_cell(self, event: AuditEvent) -> str:
        text = "; ".join(f"{key}: {value}" for key, value in event.details.items())
        return clipped(text) if text else "-"


class StaffUserAdmin(AuditHistoryMixin, AuthUserAdmin):
    """Django's own page of staff accounts, whose History shows the member's sign-ins,
    failed sign-ins and two-factor set-up."""

    def audit_timeline(self, user: Model) -> tuple[Q, str]:
        username = user.get_username()[:64]
        return Q(target_type="staff", target_id=username), username

    def change_log(self, request: HttpRequest, user: Model) -> QuerySet:
        """Staff accounts are edited here, by administrators: those edits too."""
        return (
            LogEntry.objects.filter(
                content_type=ContentType.objects.get_for_model(user), object_id=str(user.pk)
            )
            .select_related("user")
            .order_by("-action_time")[:TIMELINE_EVENTS]
        )


if admin.site.is_registered(get_user_model()):
    admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), StaffUserAdmin)
