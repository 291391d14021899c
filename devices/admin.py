"""Staff admin of devices, and the user page with the user's devices (registered here
because devices build on accounts, never the other way round)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.admin import LinkedUserAdmin
from accounts.admin_actions import Outcome, StaffAction, StaffActionsMixin
from accounts.admin_base import InSubquery, StaffAdmin, admin_change_url, app_name, clipped
from accounts.admin_forms import ReasonForm
from accounts.audit import Actor
from accounts.models import LinkedUser
from devices import services
from devices.models import Device, InactiveReason

USER_DEVICES_SHOWN = 20


def state_in_words(device: Device) -> str:
    """`device.user` must be loaded: the active device of a disabled user is refused too, and
    must not read as plainly "Active"."""
    if device.is_active:
        return "Active (user disabled)" if device.user.is_disabled else "Active"
    return f"Inactive: {InactiveReason(device.inactive_reason).label}"


def _deactivate(device: Device, actor: Actor, data: dict) -> Outcome:
    services.deactivate_device(device=device, actor=actor, reason=data.get("reason", ""))
    return Outcome(f"{device.install_id} is deactivated (Deactivated by support).")


def _deactivate_consequence(device: Device) -> str:
    return (
        f"{device} stops being the active device of user {device.user.user_id}: inactive, "
        "“Deactivated by support”. Its access token still reads /sdk/status, so the app "
        "learns why. The user has no active device until one redeems a code or is made active."
    )


def _activate(device: Device, actor: Actor, data: dict) -> Outcome:
    replaced = services.activate_device(device=device, actor=actor).replaced
    if replaced is None:
        return Outcome(f"{device.install_id} is the active device.")
    return Outcome(
        f"{device.install_id} is the active device; {replaced.install_id} lost its place "
        f"({state_in_words(replaced)})."
    )


def _activate_consequence(device: Device) -> str:
    current = Device.objects.filter(user_id=device.user_id, is_active=True).first()
    decision = services.check_activatable(device, current=current)
    becomes = f"{device} becomes the active device of user {device.user.user_id}."
    if not decision.deactivate_current:
        return f"{becomes} No other device of the user is active: none loses its place."
    return (
        f"{becomes} {current} loses its place: it becomes inactive, "
        f"“{InactiveReason(decision.reason).label}”."
    )


@admin.register(Device)
class DeviceAdmin(StaffActionsMixin, StaffAdmin):
    list_display = [
        "install",
        "kind",
        "state",
        "last_seen_at",
        "model_cell",
        "user_link",
        app_name,
    ]
    list_select_related = ["user", "app"]
    list_filter = ["platform", "form_factor", "is_active", "inactive_reason"]
    search_fields = ["install_id__prefix", "model__prefix"]
    search_help_text = (
        "An install id or a device model, or the start of one, in its exact case "
        '("iPad" finds no "ipad").'
    )
    fields = [
        "install_id",
        "user",
        "app",
        "platform",
        "form_factor",
        "model",
        "os_version",
        "app_version",
        "sdk_version",
        "state",
        "activated_at",
        "deactivated_at",
        "last_seen_at",
        "created_at",
        "access_token_expires_at",
    ]
    readonly_fields = fields
    staff_actions = (
        StaffAction(
            name="deactivate",
            label="Deactivate",
            permission="devices.deactivate_device",
            perform=_deactivate,
            check=services.check_deactivatable,
            consequence=_deactivate_consequence,
            form=ReasonForm,
        ),
        StaffAction(
            name="activate",
            label="Make active",
            permission="devices.activate_device",
            perform=_activate,
            check=services.check_activatable,
            consequence=_activate_consequence,
            single=True,
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user", "app")

    def audit_timeline(self, device: Device) -> tuple[Q, str]:
        """Install ids are unique within an app only."""
        query = Q(target_type="device", target_id=device.install_id, app_id=device.app_id)
        return query, device.install_id

    @admin.display(description="install id")
    def install(self, device: Device) -> str:
        return clipped(device.install_id)

    @admin.display(description="kind")
    def kind(self, device: Device) -> str:
        return f"{device.get_platform_display()} {device.get_form_factor_display().lower()}"

    @admin.display(description="model")
    def model_cell(self, device: Device) -> str:
        return clipped(device.model) if device.model else "-"

    @admin.display(description="user")
    def user_link(self, device: Device) -> str:
        return format_html('<a href="{}">{}</a>', admin_change_url(device.user), device.user)

    @admin.display(description="state")
    def state(self, device: Device) -> str:
        return format_html('<span class="wraps">{}</span>', state_in_words(device))


class HasActiveDeviceFilter(admin.SimpleListFilter):
    title = "has an active device"
    parameter_name = "active_device"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(_has_active_device())
        if self.value() == "no":
            return queryset.filter(~_has_active_device())
        return queryset


def _has_active_device() -> Exists:
    """Served by the one-active-device-per-user partial unique index."""
    return Exists(Device.objects.filter(user=OuterRef("pk"), is_active=True))


@admin.register(LinkedUser)
class UserAdmin(LinkedUserAdmin):
    list_display = [
        *LinkedUserAdmin.list_display[:3],
        "active_device",
        *LinkedUserAdmin.list_display[3:],
    ]
    list_filter = [*LinkedUserAdmin.list_filter, HasActiveDeviceFilter]

    search_help_text = f"{LinkedUserAdmin.search_help_text} Or an install id of one of its devices."

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(has_active_device=_has_active_device())

    def search_filter(self, term: str) -> Q:
        """Also the users of the devices with this install id (one per app at most), by the
        install id index: support often has only what the app's logs show."""
        devices = Device.objects.filter(install_id=term).values("user_id")
        return super().search_filter(term) | Q(InSubquery(F("pk"), devices))

    @admin.display(boolean=True, description="active device")
    def active_device(self, user: LinkedUser) -> bool:
        return user.has_active_device

    def user_page_context(self, request: HttpRequest, user: LinkedUser) -> dict[str, Any]:
        context = super().user_page_context(request, user)
        if request.user.has_perm("devices.view_device"):
            device_admin = self.admin_site.get_model_admin(Device)
            here = request.get_full_path()
            devices = user.devices.order_by("-is_active", "-last_seen_at", "-pk")

            context["devices"] = [
                {
                    "device": device,
                    "url": admin_change_url(device),
                    "state": state_in_words(device),
                    "actions": device_admin.staff_action_links(request, device, here),
                }
                for device in devices[:USER_DEVICES_SHOWN]
            ]
        return context
