"""No page ever shows a secret or a digest: API key secrets and digests, codes and their
digests, access tokens and their digests. The only exception is the one answer that shows a
new key, once."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey
from tests.admin.conftest import World
from tests.admin.pages import action_page, add_key_page, viewing_pages


def every_page(world: World) -> list[str]:
    return [
        *viewing_pages(world),
        add_key_page(),
        action_page(world.phone, "deactivate"),
        action_page(world.tablet, "activate"),
        action_page(world.user, "disable"),
        action_page(world.user, "delete"),
        action_page(world.key, "revoke"),
        action_page(world.key, "rotate"),
    ]


def assert_no_secret(client: Client, urls: list[str], secrets: list[str]) -> None:
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        for secret in secrets:
            assert secret not in response.text, f"{url} shows a secret or digest"


def test_no_page_shows_a_secret_or_a_digest(root: Client, world: World) -> None:
    assert_no_secret(root, every_page(world), world.secrets)


def test_a_key_created_in_the_admin_is_shown_once_and_nowhere_else(
    root: Client, world: World
) -> None:
    nonce = root.get(add_key_page()).context["form_nonce"]
    created = root.post(
        add_key_page(),
        {
            "app": world.app.pk,
            "name": "made here",
            "scopes": ["user.link"],
            "expires_in_days": 30,
            "form_nonce": nonce,
        },
    )
    [(_, full_key)] = created.context["secrets"]
    assert created.text.count(full_key) == 1
    key = ApiKey.objects.get(key_id=full_key.split(".")[0])
    secrets = [*world.secrets, full_key.split(".", 1)[1], key.secret_digest]
    pages = [
        *every_page(world),
        reverse("admin:accounts_apikey_change", args=[key.pk]),
        reverse("admin:accounts_apikey_history", args=[key.pk]),
        action_page(key, "rotate"),
    ]
    assert_no_secret(root, pages, secrets)
