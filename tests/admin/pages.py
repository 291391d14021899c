"""Every page of the staff admin for a world, by reverse(): the lists, with and without a
search, each object's page and history, and the forms."""

from __future__ import annotations

from django.urls import reverse

from accounts.models import AuditEvent

MODELS = [
    ("accounts", "app"),
    ("accounts", "apikey"),
    ("accounts", "linkeduser"),
    ("accounts", "authcode"),
    ("accounts", "deletionrequest"),
    ("accounts", "auditevent"),
    ("devices", "device"),
]


def changelists() -> list[str]:
    return [reverse(f"admin:{label}_{model}_changelist") for label, model in MODELS]


def objects_of(world) -> list:
    event = AuditEvent.objects.filter(user_ref=world.user.user_id).first()
    return [
        world.app,
        world.key,
        world.user,
        world.code,
        world.deletion,
        event,
        world.phone,
        world.tablet,
    ]


def object_pages(world) -> list[str]:
    pages = []
    for obj in objects_of(world):
        label, model = obj._meta.app_label, obj._meta.model_name
        pages.append(reverse(f"admin:{label}_{model}_change", args=[obj.pk]))
        pages.append(reverse(f"admin:{label}_{model}_history", args=[obj.pk]))
    return pages


def searches(world) -> list[str]:
    return [
        reverse("admin:accounts_linkeduser_changelist") + "?q=alice",
        reverse("admin:accounts_linkeduser_changelist") + f"?q={world.user.user_id}",
        reverse("admin:devices_device_changelist") + "?q=phone-",
        reverse("admin:accounts_apikey_changelist") + f"?q={world.key.key_id}",
        reverse("admin:accounts_authcode_changelist") + f"?q={world.user.user_id}",
        reverse("admin:accounts_auditevent_changelist") + f"?q={world.user.user_id}",
    ]


def viewing_pages(world) -> list[str]:
    """What anyone in a role may open."""
    return [
        reverse("admin:index"),
        reverse("admin:app_list", args=["accounts"]),
        reverse("admin:app_list", args=["devices"]),
        *changelists(),
        *searches(world),
        *object_pages(world),
    ]


def add_key_page() -> str:
    return reverse("admin:accounts_apikey_add")


def action_page(obj, action: str) -> str:
    label, model = obj._meta.app_label, obj._meta.model_name
    return reverse(f"admin:{label}_{model}_staff_action", args=[action]) + f"?ids={obj.pk}"
