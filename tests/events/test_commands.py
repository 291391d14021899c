"""The webhook endpoint commands, as operators run them: one JSON object each."""

from __future__ import annotations

import json

import pytest

from events import crypto
from events.models import WebhookEndpoint
from tests.factories import AppFactory
from tests.helpers import run_command as run
from tests.helpers import run_command_failing as run_failing

pytestmark = pytest.mark.django_db


def test_create_list_rotate_disable(hook):
    app = AppFactory()
    created = run(
        "create_webhook_endpoint", "--app", app.app_id, "--url", hook.url,
        "--events", "user.created,user.deleted",
    )  # fmt: skip
    assert set(created) == {"endpoint_id", "url", "events", "secret"}
    assert created["events"] == ["user.created", "user.deleted"]
    endpoint = WebhookEndpoint.objects.get(endpoint_id=created["endpoint_id"])
    assert crypto.decrypt(endpoint.secret_encrypted) == created["secret"]

    everything = run("create_webhook_endpoint", "--app", app.app_id, "--url", hook.url)
    assert everything["events"] == ["*"]

    listed = run("list_webhook_endpoints", "--app", app.app_id)["endpoints"]
    assert [e["endpoint_id"] for e in listed] == [created["endpoint_id"], everything["endpoint_id"]]
    assert created["secret"] not in json.dumps(listed)
    assert listed[0]["enabled"] is True and listed[0]["app_id"] == app.app_id

    rotated = run("rotate_webhook_secret", created["endpoint_id"])
    assert set(rotated) == {"endpoint_id", "secret"} and rotated["secret"] != created["secret"]
    assert rotated["secret"].startswith("whsec_")

    disabled = run("disable_webhook_endpoint", created["endpoint_id"])
    assert disabled["enabled"] is False and disabled["disabled_at"].endswith("Z")
    assert run("list_webhook_endpoints")["endpoints"][0]["enabled"] is False
    assert run("reencrypt_webhook_secrets") == {"reencrypted": 2}


def test_refusals_are_one_json_object(settings):
    app = AppFactory()
    unknown = run_failing("create_webhook_endpoint", "--app", "0" * 24, "--url", "https://x.test")
    assert "no app" in unknown["error"]
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    refused = run_failing(
        "create_webhook_endpoint", "--app", app.app_id, "--url", "https://127.0.0.1/x"
    )
    assert "loopback" in refused["error"]
    assert "unknown event type" in run_failing(
        "create_webhook_endpoint", "--app", app.app_id, "--url", "http://127.0.0.1/x",
        "--events", "user.nope",
    )["error"]  # fmt: skip
    assert "no webhook endpoint" in run_failing("rotate_webhook_secret", "f" * 24)["error"]


def test_the_openapi_document_describes_the_webhook_payload(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    event = schema["components"]["schemas"]["WebhookEvent"]
    assert event["required"] == ["id", "type", "created_at", "app_id", "data"]
    assert "api_key.expiring" in event["properties"]["type"]["enum"]
    assert "Portal-Signature" in event["description"]
    assert "WebhookEvent" in schema["info"]["description"]
