"""The staff roles: which permissions each group holds."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

SUPPORT = "Support"
KEY_ADMINISTRATORS = "Key administrators"

_VIEW_MODELS = {
    "accounts": ["app", "apikey", "linkeduser", "authcode", "deletionrequest", "auditevent"],
    "devices": ["device"],
    "events": ["webhookendpoint", "delivery"],
}
_SUPPORT_ACTIONS = [
    ("accounts", "disable_linkeduser"),
    ("devices", "deactivate_device"),
    # The App page's "Invite to the console" (console/admin.py): how a customer's first owner
    # gets in. By name, as accounts never imports the console.
    ("console", "add_invitation"),
    # Webhooks (events/admin.py): redeliver, send a test event.
    ("events", "redeliver_webhookendpoint"),
]
_KEY_ACTIONS = [
    ("accounts", "add_apikey"),
    ("accounts", "revoke_apikey"),
    ("accounts", "rotate_apikey"),
    # Webhook endpoints (events/admin.py): create, rotate the secret, disable, enable.
    ("events", "manage_webhookendpoint"),
]


def _permissions(pairs: list[tuple[str, str]]) -> list[Permission]:
    query = Q()
    for app_label, codename in pairs:
        query |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.filter(query))
    if len(found) != len(pairs):
        raise RuntimeError("permissions missing: run migrate first")
    return found


def role_permissions() -> dict[str, list[tuple[str, str]]]:
    view = [(label, f"view_{model}") for label, models in _VIEW_MODELS.items() for model in models]
    support = view + _SUPPORT_ACTIONS
    return {SUPPORT: support, KEY_ADMINISTRATORS: support + _KEY_ACTIONS}


@transaction.atomic
def setup_roles() -> dict[str, int]:
    """Creates or updates the groups to hold exactly their role's permissions."""
    result = {}
    for name, pairs in role_permissions().items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(_permissions(pairs))
        result[name] = len(pairs)
    return result
