"""Small helpers shared by the API tests."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient


def issue_code(customer: APIClient, external_id: str) -> dict[str, Any]:
    response = customer.post("/users/auth-code", {"external_id": external_id}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def device_payload(
    install_id: str = "install-phone-1", form_factor: str = "phone", **extra: Any
) -> dict[str, Any]:
    return {
        "install_id": install_id,
        "platform": "android",
        "form_factor": form_factor,
        "model": "Pixel 9",
        "os_version": "15",
        "app_version": "4.2.0",
        "sdk_version": "2.3.0",
        **extra,
    }


def redeem(
    client: APIClient, code: str, app_id: str, install_id: str = "install-phone-1", **device: Any
):
    return client.post(
        "/sdk/users",
        {
            "authentication_code": code,
            "app_id": app_id,
            "device": device_payload(install_id, **device),
        },
        format="json",
    )


def new_user(customer: APIClient, app_id: str, external_id: str = "alice") -> str:
    """A code issued and redeemed on the user's first device: what creates the user in the
    audit log and announces `user.created`. Returns the user id."""
    code = issue_code(customer, external_id)["authentication_code"]
    answer = redeem(APIClient(), code, app_id, f"install-{external_id}")
    assert answer.status_code == 201, answer.content
    return answer.json()["user_id"]


def run_command(*args: str) -> dict:
    """A management command run with --json, its output read back."""
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def run_command_failing(*args: str) -> dict:
    """A management command run with --json that must exit 1; its output read back."""
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command(*args, "--json", stdout=out)
    assert exit_info.value.code == 1
    return json.loads(out.getvalue())
