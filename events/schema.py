"""The events the portal sends, in the OpenAPI document: OpenAPI 3.0 has no `webhooks`
section (3.1 has), so the payload is a component schema of its own, `WebhookEvent`, which the
document's description points to (a drf-spectacular postprocessing hook)."""

from __future__ import annotations

from typing import Any

from accounts.lifecycle import EventType
from devices.models import InactiveReason

_STRING = {"type": "string"}

WEBHOOK_EVENT: dict[str, Any] = {
    "type": "object",
    "description": (
        "POSTed as JSON to each webhook endpoint that wants its type, with the headers "
        "Portal-Event-Id, Portal-Event-Type and Portal-Signature: t=<unix seconds>,v1=<hex "
        'HMAC-SHA256 of "<t>.<raw body>" with the endpoint\'s whsec_ secret> (two v1= for 24 '
        "hours after a rotation). Delivered at least once: dedupe by id. See docs/WEBHOOKS.md."
    ),
    "required": ["id", "type", "created_at", "app_id", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{24}$", "description": "Unique."},
        "type": {"type": "string", "enum": EventType.values},
        "created_at": {"type": "string", "format": "date-time"},
        "app_id": _STRING,
        "data": {
            "type": "object",
            "description": "Public ids and facts only, as the type needs; never a secret.",
            "properties": {
                "user_id": _STRING,
                "external_id": _STRING,
                "install_id": _STRING,
                "platform": {"type": "string", "enum": ["android", "ios"]},
                "form_factor": {"type": "string", "enum": ["phone", "tablet"]},
                "reason": {"type": "string", "enum": InactiveReason.values},
                "key_id": _STRING,
                "new_key_id": _STRING,
                "expires_at": {"type": "string", "format": "date-time"},
                "request_id": _STRING,
            },
        },
    },
}

DESCRIPTION = (
    "\n\n**Webhooks.** The portal also POSTs signed lifecycle events to the endpoints an app "
    "registers; their body is the `WebhookEvent` schema below (types: "
    + ", ".join(f"`{name}`" for name in EventType.values)
    + ")."
)


def add_webhook_event(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["WebhookEvent"] = WEBHOOK_EVENT
    result["info"]["description"] = result["info"].get("description", "") + DESCRIPTION
    return result
