"""user.created under a race: twenty first devices of one user redeeming at once take turns on
the user row, so exactly one of them is the user's first redemption and announces it; the
others bring the user back. Real threads on the real PostgreSQL."""

from __future__ import annotations

from collections import Counter

import pytest
from rest_framework.test import APIClient

from accounts.audit import Actor
from events import outbox, services
from events.models import Event
from tests.concurrency import run_together, values
from tests.helpers import issue_code, redeem

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20


def test_twenty_first_devices_at_once_announce_user_created_once(customer, app, monkeypatch):
    monkeypatch.setattr(outbox, "_kick", lambda: None)  # written rows are what is checked
    services.create_endpoint(
        app=app,
        url="http://127.0.0.1:9/x",
        event_types=["user.created", "user.restored"],
        actor=Actor.operator("tests"),
    )
    codes = [issue_code(customer, "alice")["authentication_code"] for _ in range(THREADS)]
    assert not Event.objects.exists()

    def redemption(code: str, install_id: str):
        client = APIClient()
        return lambda: redeem(client, code, app.app_id, install_id)

    responses = values(
        run_together([redemption(code, f"install-{n:02d}") for n, code in enumerate(codes)])
    )

    assert [response.status_code for response in responses] == [201] * THREADS
    restored = Counter(response.json()["restored"] for response in responses)
    assert restored == {False: 1, True: THREADS - 1}
    announced = list(Event.objects.order_by("pk").values_list("type", flat=True))
    assert announced == ["user.created"] + ["user.restored"] * (THREADS - 1)
    first = next(response.json() for response in responses if not response.json()["restored"])
    assert Event.objects.get(type="user.created").data == {
        "user_id": first["user_id"],
        "external_id": "alice",
    }
