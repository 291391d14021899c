"""create_app and create_api_key, as operators run them."""

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts import crypto
from accounts.models import ApiKey, App
from tests.factories import ApiKeyFactory
from tests.helpers import run_command as run
from tests.helpers import run_command_failing as run_failing

pytestmark = pytest.mark.django_db


def test_create_app():
    result = run(
        "create_app",
        "Acme Fitness",
        "--contact-email",
        "a@acme.test",
        "--contact-email",
        "b@acme.test",
    )
    app = App.objects.get()
    assert result == {"app_id": app.app_id, "name": "Acme Fitness"}
    assert len(app.app_id) == 24
    assert app.contact_emails == ["a@acme.test", "b@acme.test"]


def test_create_app_refuses_a_bad_email():
    result = run_failing("create_app", "Acme", "--contact-email", "not-an-email")
    assert "not-an-email" in result["error"]
    assert App.objects.count() == 0


def test_create_api_key_shows_the_key_once_and_stores_its_digest(app):
    result = run(
        "create_api_key",
        "--app",
        app.app_id,
        "--name",
        "backend",
        "--scopes",
        "user.read,user.link",
    )
    key = ApiKey.objects.get()
    assert set(result) == {"key_id", "api_key", "scopes", "expires_at"}
    assert result["key_id"] == key.key_id
    assert len(key.key_id) == 16
    key_id, secret = result["api_key"].split(".")
    assert key_id == key.key_id
    assert key.secret_digest == crypto.digest(secret)
    assert result["scopes"] == ["user.link", "user.read"]
    expires = dt.datetime.fromisoformat(result["expires_at"])
    assert abs(expires - (timezone.now() + dt.timedelta(days=365))) < dt.timedelta(minutes=1)


def test_the_created_key_works(app, api):
    result = run("create_api_key", "--app", app.app_id, "--name", "b", "--scopes", "user.link")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {result['api_key']}")
    response = api.post("/users/auth-code", {"external_id": "alice"}, format="json")
    assert response.status_code == 200


def test_expiry_in_days(app):
    result = run(
        "create_api_key",
        "--app",
        app.app_id,
        "--name",
        "b",
        "--scopes",
        "user.link",
        "--expires-in-days",
        "30",
    )
    expires = dt.datetime.fromisoformat(result["expires_at"])
    assert abs(expires - (timezone.now() + dt.timedelta(days=30))) < dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "0" * 24, "--name", "b", "--scopes", "user.link"], "no app"),
        (["--name", "b", "--scopes", "user.admin"], "unknown scope"),
        (["--name", "b", "--scopes", ","], "at least one scope"),
        (["--name", " ", "--scopes", "user.link"], "blank"),
        (["--name", "b", "--scopes", "user.link", "--expires-in-days", "0"], "between 1 and 3650"),
        (["--name", "b", "--scopes", "user.link", "--expires-in-days", "99999999"], "between 1"),
    ],
)
def test_create_api_key_refuses_bad_arguments(app, args, message):
    if "--app" not in args:
        args = ["--app", app.app_id, *args]
    result = run_failing("create_api_key", *args)
    assert message in result["error"]
    assert ApiKey.objects.count() == 0


def test_the_cap_of_active_keys(app, settings):
    settings.MAX_ACTIVE_API_KEYS_PER_APP = 2
    ApiKeyFactory(app=app)
    ApiKeyFactory(app=app, revoked_at=timezone.now())  # not active: does not count
    ApiKeyFactory(app=app, expires_at=timezone.now())  # neither
    run("create_api_key", "--app", app.app_id, "--name", "b", "--scopes", "user.link")

    result = run_failing(
        "create_api_key", "--app", app.app_id, "--name", "c", "--scopes", "user.link"
    )
    assert "MAX_ACTIVE_API_KEYS_PER_APP" in result["error"]


def test_without_json_errors_are_command_errors(app):
    with pytest.raises(CommandError, match="unknown scope"):
        call_command(
            "create_api_key", "--app", app.app_id, "--name", "b", "--scopes", "x", stdout=StringIO()
        )


@pytest.mark.parametrize("name", ["Evil\nBcc: all@x.test", "Nul\x00", "   "])
def test_create_app_refuses_names_that_are_not_plain_text(name):
    result = run_failing("create_app", name)
    assert result["error"]
    assert App.objects.count() == 0


def test_argument_errors_are_json_too(capsys):
    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "create_api_key", "--json"]).execute()
    assert exit_info.value.code == 1
    assert "required" in json.loads(capsys.readouterr().out)["error"]
