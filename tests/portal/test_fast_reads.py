"""The hot path's hand-written reads and shared output serializers give exactly what the ORM
and a fresh serializer give: they are there for speed only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import crypto, selectors
from accounts.models import ApiKey, LinkedUser
from devices.api import StatusView, UserOutput
from devices.authentication import _device_by_token_digest
from devices.models import Device
from portal.output import render
from tests.factories import ApiKeyFactory, DeviceFactory, LinkedUserFactory

GOOD_DEVICE = {"install_id": "install-0001", "platform": "ios", "form_factor": "phone"}


def _fields(obj) -> dict:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


@pytest.mark.django_db
def test_the_token_lookup_loads_the_device_user_and_app_as_the_orm_does() -> None:
    device = DeviceFactory(access_token_digest=crypto.digest("token-1"), deactivated_at=None)
    LinkedUser.objects.filter(pk=device.user_id).update(disabled_at=timezone.now())

    found = _device_by_token_digest(crypto.digest("token-1"))

    orm = Device.objects.select_related("user", "app").get(pk=device.pk)
    assert _fields(found) == _fields(orm)
    assert _fields(found.user) == _fields(orm.user)
    assert _fields(found.app) == _fields(orm.app)
    assert found.app.sdk_config == orm.app.sdk_config and isinstance(found.app.sdk_config, dict)
    assert found.user.is_disabled and found._state.adding is False
    assert _device_by_token_digest(crypto.digest("no-such-token")) is None


@pytest.mark.django_db
def test_the_key_lookup_reads_the_key_as_the_orm_does(app) -> None:
    key = ApiKeyFactory(app=app, scopes=["user.link", "user.read"])
    found = selectors._api_key_by_id(key.key_id)
    assert _fields(found) == _fields(ApiKey.objects.get(pk=key.pk))
    assert found.scopes == ["user.link", "user.read"]
    assert (found.app.app_id, found.app.is_active) == (app.app_id, True)
    assert selectors._api_key_by_id("0" * 16) is None


@pytest.mark.django_db
@pytest.mark.parametrize("active", [True, False])
def test_a_shared_output_serializer_renders_what_a_fresh_one_does(app, active) -> None:
    user = LinkedUserFactory(app=app)
    seen = timezone.now().replace(microsecond=123456) - dt.timedelta(days=2)
    device = DeviceFactory(user=user, last_seen_at=seen)
    if active:
        Device.objects.filter(pk=device.pk).update(
            is_active=True, inactive_reason=None, activated_at=timezone.now()
        )
    else:
        Device.objects.filter(pk=device.pk).update(
            is_active=False, inactive_reason="RESET", deactivated_at=timezone.now()
        )
    device = Device.objects.select_related("user", "app").get(pk=device.pk)
    for _ in range(2):  # the second call reuses the first one's serializer
        assert render(StatusView.OutputSerializer, device) == dict(
            StatusView.OutputSerializer(device).data
        )
    user = LinkedUser.objects.prefetch_related("devices").get(pk=user.pk)
    assert render(UserOutput, user) == dict(UserOutput(user).data)


@pytest.mark.parametrize(
    "body",
    [
        {"authentication_code": "c" * 20, "app_id": "a" * 24, "device": GOOD_DEVICE},
        {"authentication_code": "c" * 20, "app_id": "a" * 24, "device": {"install_id": "x"}},
        {"authentication_code": 7, "device": []},
        {"authentication_code": "c\x00", "app_id": "a" * 65, "device": None},
        {},
        [],
        None,
        "text",
    ],
)
def test_a_shared_input_serializer_validates_as_a_fresh_one_does(body) -> None:
    """The same validated data, or the same error detail, as `is_valid(raise_exception=True)`."""
    from rest_framework.exceptions import ValidationError

    from devices.api import RedeemView
    from portal.output import validated

    fresh = RedeemView.InputSerializer(data=body)
    try:
        fresh.is_valid(raise_exception=True)
    except ValidationError as exc:
        expected = ("error", exc.detail)
    else:
        expected = ("valid", fresh.validated_data)
    for _ in range(2):  # the second call reuses the first one's serializer
        try:
            outcome = ("valid", validated(RedeemView.InputSerializer, body))
        except ValidationError as exc:
            outcome = ("error", exc.detail)
        assert outcome == expected


def test_redemptions_json_rows_only_hold_fields_that_json_carries_faithfully() -> None:
    """Redemption reads codes, users and devices as row_to_json() and converts each value with
    the field's to_python: right for text, booleans, integers, keys and timestamps. A binary,
    decimal or custom field would convert wrongly without a sound: it must change the read."""
    from django.db import models

    from accounts.models import AuthCode

    faithful = (
        models.AutoField,
        models.BigAutoField,
        models.CharField,
        models.BooleanField,
        models.DateTimeField,
        models.ForeignKey,
        models.PositiveIntegerField,
        models.IntegerField,
    )
    for model in (AuthCode, LinkedUser, Device):
        for field in model._meta.concrete_fields:
            assert type(field) in faithful or (
                type(field).__module__.startswith("django.db.models")
                and isinstance(field, faithful)
            ), f"{model.__name__}.{field.name} is a {type(field).__name__}"


# --------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("accept", "query"),
    [
        (None, ""),
        ("*/*", ""),
        ("application/json", ""),
        ("application/json; indent=4", ""),
        ("application/*", ""),
        ("text/html", ""),
        ("text/html, application/json;q=0.9", ""),
        (None, "format=json"),
        (None, "format=xml"),
        ("*/*", "external_id=a"),
    ],
)
def test_the_quick_negotiation_answers_what_drfs_answers(accept, query) -> None:
    """The shortcut for the usual Accept headers gives DRF's own answer; the others still go
    through DRF (where an unsatisfiable one falls back to JSON)."""
    from rest_framework.exceptions import NotAcceptable
    from rest_framework.negotiation import DefaultContentNegotiation
    from rest_framework.renderers import JSONRenderer
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from portal.parsers import JSONFallbackNegotiation

    headers = {"HTTP_ACCEPT": accept} if accept else {}
    request = Request(APIRequestFactory().get(f"/sdk/status?{query}", **headers))
    renderers = [JSONRenderer()]
    renderer, media_type = JSONFallbackNegotiation().select_renderer(request, renderers)
    try:
        expected = DefaultContentNegotiation().select_renderer(request, renderers)
    except NotAcceptable:
        expected = (renderers[0], "application/json")
    except Exception:  # Http404 for ?format=xml: the view's own format instead
        expected = (renderers[0], "application/json")
    assert (renderer, media_type) == expected


# --------------------------------------------------------------------------- prepared statements


def _prepared() -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {" ".join(statement.split()) for (statement,) in cursor.fetchall()}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_hot_statements_are_prepared_once_per_connection(customer, app) -> None:
    """Issuance, redemption and the token lookup run prepared statements (bound values, no
    parsing or planning after the first time); a refused redemption (a rollback, after which
    psycopg forgets what it prepared) and a new connection cost nothing but a new preparation."""
    from django.db import connection

    from tests.helpers import issue_code, redeem

    codes = [issue_code(customer, f"user-{n}")["authentication_code"] for n in range(3)]
    prepared = _prepared()
    assert any("INSERT INTO accounts_authcode" in text for text in prepared)
    assert any("FROM accounts_apikey k JOIN accounts_app a" in text for text in prepared)
    assert not any("%s" in text or "%(" in text for text in prepared)  # bound: $1, $2, ...

    assert redeem(APIClient(), codes[0], app.app_id, "install-0001").status_code == 201
    assert redeem(APIClient(), codes[0], app.app_id, "install-0002").status_code == 409
    assert redeem(APIClient(), codes[1], app.app_id, "install-0003").status_code == 201
    assert any("WITH used AS ( UPDATE accounts_authcode" in text for text in _prepared())

    connection.close()
    answer = redeem(APIClient(), codes[2], app.app_id, "install-0004")
    assert answer.status_code == 201
    sdk = APIClient()
    sdk.credentials(HTTP_AUTHORIZATION=f"Bearer {answer.json()['access_token']}")
    assert sdk.get("/sdk/status").json()["device"]["install_id"] == "install-0004"
    assert any("WHERE d.access_token_digest = $1" in text for text in _prepared())


@pytest.mark.parametrize(
    ("conn_max_age", "prepared_statements", "prepared"),
    [(60, None, True), (None, None, True), (0, None, False), (60, False, False), (0, True, True)],
)
def test_prepared_statements_where_connections_are_kept(
    conn_max_age, prepared_statements, prepared
) -> None:
    """By default only on connections kept for later requests (preparing costs a round trip per
    statement and connection); DATABASE_PREPARED_STATEMENTS=false for a pooler that cannot keep
    them. Off, psycopg prepares nothing; on, only what asks for it."""
    from portal.db.config import configure_postgresql

    database = {"ENGINE": "django.db.backends.postgresql"}
    configure_postgresql(
        database,
        connect_timeout=3,
        statement_timeout=5,
        conn_max_age=conn_max_age,
        prepared_statements=prepared_statements,
    )
    threshold = database["OPTIONS"]["prepare_threshold"]
    assert (threshold is not None and threshold > 10**9) if prepared else threshold is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_column_retyped_under_a_prepared_statement_costs_one_answer_per_connection(
    monkeypatch,
) -> None:
    """A migration that changes the type of a column a prepared statement reads (a longer
    varchar, as the release step runs while the old processes serve) makes PostgreSQL refuse
    that statement on every connection that prepared it ("cached plan must not change result
    type"), for as long as the connection lives. The statement that meets it fails as the
    database being unavailable (503, worth a retry), and its connection is dropped at the end
    of the request, not kept for CONN_MAX_AGE refusing every token lookup."""
    import psycopg
    from django.db import OperationalError, connection

    digest = crypto.digest("token-1")
    device = DeviceFactory(access_token_digest=digest)
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)  # kept, as in production
    assert _device_by_token_digest(digest).pk == device.pk  # prepared on this connection
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as migration:
        migration.execute("ALTER TABLE devices_device ALTER COLUMN model TYPE varchar(129)")
        try:
            with pytest.raises(OperationalError):
                _device_by_token_digest(digest)
            connection.close_if_unusable_or_obsolete()  # what Django does after each request
            assert _device_by_token_digest(digest).pk == device.pk
        finally:
            connection.close()  # its statements were prepared against the changed column
            migration.execute("ALTER TABLE devices_device ALTER COLUMN model TYPE varchar(128)")
