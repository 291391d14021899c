"""Who may see and do what: "Support" views everything, deactivates devices and disables or
enables users; "Key administrators" also create, revoke and rotate keys; staff outside both
roles get 403 on every page, on a page that says why and offers sign-out; anyone else is sent
to the login page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, AuditAction, AuditEvent
from tests.admin.conftest import World
from tests.admin.pages import action_page, add_key_page, changelists, viewing_pages


def test_staff_outside_both_roles_get_403_on_every_page(outsider: Client, world: World) -> None:
    pages = [
        *viewing_pages(world),
        add_key_page(),
        action_page(world.phone, "deactivate"),
        action_page(world.tablet, "activate"),
        action_page(world.user, "disable"),
        action_page(world.key, "revoke"),
        action_page(world.key, "rotate"),
    ]
    for url in pages:
        response = outsider.get(url)
        assert response.status_code == 403, url
        assert "holds no staff role" in response.text, url
        assert response["Cache-Control"].startswith("max-age=0"), url


def test_staff_outside_both_roles_are_told_why_and_offered_sign_out(outsider: Client) -> None:
    page = outsider.get(reverse("admin:index"))
    assert page.status_code == 403
    assert page.templates[0].name == "admin/outside_the_roles.html"
    assert "outsider" in page.text
    assert "Support" in page.text and "Key administrators" in page.text
    logout = reverse("admin:logout")
    assert f'action="{logout}"' in page.text
    assert 'value="Sign out"' in page.text
    assert not any(url in page.text for url in changelists()), "no page is offered"


def test_staff_outside_both_roles_can_still_log_out(outsider: Client) -> None:
    assert outsider.post(reverse("admin:logout")).status_code == 200
    assert outsider.get(reverse("admin:index")).status_code == 302


def test_a_role_refused_one_page_keeps_the_plain_403(support: Client, world: World) -> None:
    response = support.get(action_page(world.key, "rotate"))
    assert response.status_code == 403
    assert "holds no staff role" not in response.text


def test_anonymous_visitors_are_sent_to_the_login_page(client: Client, world: World) -> None:
    for url in [reverse("admin:index"), *changelists()]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("role", ["support", "key_admin"])
def test_both_roles_see_every_page(role: str, request: pytest.FixtureRequest, world: World) -> None:
    client = request.getfixturevalue(role)
    for url in viewing_pages(world):
        assert client.get(url).status_code == 200, url


def test_no_page_offers_to_add_change_or_delete_through_the_generic_views(
    root: Client, world: World
) -> None:
    """Even a superuser writes only through the services: users, devices, codes, events and
    deletion requests have no add, save or delete."""
    for obj in [world.user, world.phone, world.code, world.deletion]:
        opts = obj._meta
        change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        assert 'name="_save"' not in root.get(change).text
        delete = reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[obj.pk])
        assert root.get(delete).status_code == 403
        add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        assert root.get(add).status_code == 403


USERNAMES = {"support": "support", "key_admin": "keyadmin"}

# (object in the world, action, which roles may take it)
ACTIONS = [
    ("user", "disable", {"support", "key_admin"}),
    ("user", "delete", set()),
    ("phone", "deactivate", {"support", "key_admin"}),
    ("phone", "activate", set()),
    ("key", "revoke", {"key_admin"}),
    ("key", "rotate", {"key_admin"}),
]


@pytest.mark.parametrize("role", ["support", "key_admin"])
@pytest.mark.parametrize(("target", "action", "allowed"), ACTIONS)
def test_each_action_is_open_to_its_roles_only(
    role: str,
    target: str,
    action: str,
    allowed: set[str],
    request: pytest.FixtureRequest,
    world: World,
) -> None:
    client = request.getfixturevalue(role)
    obj = getattr(world, target)
    confirmation = client.get(action_page(obj, action))
    executed = client.post(action_page(obj, action), {"ids": obj.pk, "grace_hours": 24})
    if role in allowed:
        assert confirmation.status_code == 200
        assert executed.status_code in (200, 302)
        assert AuditEvent.objects.filter(actor_type="staff", actor=USERNAMES[role]).exists()
    else:
        assert confirmation.status_code == 403
        assert executed.status_code == 403
        assert not AuditEvent.objects.filter(actor_type="staff").exists()


@pytest.mark.parametrize(
    ("role", "offered"),
    [
        ("support", {"disable", "enable"}),
        ("key_admin", {"disable", "enable"}),
        ("root", {"disable", "enable", "delete"}),
    ],
)
def test_the_user_list_offers_the_actions_of_the_role(
    role: str, offered: set[str], request: pytest.FixtureRequest, world: World
) -> None:
    page = request.getfixturevalue(role).get(reverse("admin:accounts_linkeduser_changelist"))
    choices = {value for value, _ in page.context["action_form"].fields["action"].choices}
    assert choices - {""} == offered


@pytest.mark.parametrize(
    ("role", "offered"), [("support", set()), ("key_admin", {"revoke", "rotate"})]
)
def test_the_key_list_offers_key_actions_to_key_administrators_only(
    role: str, offered: set[str], request: pytest.FixtureRequest, world: World
) -> None:
    page = request.getfixturevalue(role).get(reverse("admin:accounts_apikey_changelist"))
    form = page.context["action_form"]
    choices = {value for value, _ in form.fields["action"].choices} if form else set()
    assert choices - {""} == offered


def test_only_key_administrators_create_keys(
    support: Client, key_admin: Client, world: World
) -> None:
    form = {"app": world.app.pk, "name": "new", "scopes": ["user.link"], "expires_in_days": 30}
    assert support.get(add_key_page()).status_code == 403
    assert support.post(add_key_page(), form).status_code == 403
    assert key_admin.get(add_key_page()).status_code == 200
    assert "Add API key" not in support.get(reverse("admin:accounts_apikey_changelist")).text
    keys_before = ApiKey.objects.count()
    page = key_admin.get(add_key_page())
    key_admin.post(add_key_page(), {**form, "form_nonce": page.context["form_nonce"]})
    assert ApiKey.objects.count() == keys_before + 1
    assert AuditEvent.objects.filter(action=AuditAction.KEY_CREATED, actor="keyadmin").exists()


def test_editing_apps_needs_the_change_permission(
    support: Client, support_user, world: World
) -> None:
    url = reverse("admin:accounts_app_change", args=[world.app.pk])
    assert 'name="_save"' not in support.get(url).text
    assert support.post(url, {"name": "Renamed"}).status_code == 403
    support_user.user_permissions.add(Permission.objects.get(codename="change_app"))
    assert 'name="_save"' in support.get(url).text
