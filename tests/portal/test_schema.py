"""The OpenAPI document covers every endpoint, field and error code of the contract."""

import pytest

from portal.errors import ErrorCode

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "/users/auth-code": {"post"},
    "/users": {"get"},
    "/users/{user_id}": {"get", "delete"},
    "/users/deletions/{request_id}": {"get"},
    "/sdk/users": {"post"},
    "/sdk/status": {"get"},
    "/sdk/token": {"post"},
    "/sdk/reset": {"post"},
    "/healthz": {"get"},
    "/readyz": {"get"},
}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_every_endpoint_is_documented(schema):
    documented = {path: set(ops) - {"parameters"} for path, ops in schema["paths"].items()}
    assert documented == ENDPOINTS


def test_every_error_code_is_documented(schema):
    enum = schema["components"]["schemas"]["ErrorCodeEnum"]["enum"]
    assert set(enum) == {code.value for code in ErrorCode}


def test_error_responses_name_their_codes(schema):
    redeem = schema["paths"]["/sdk/users"]["post"]["responses"]
    assert {"200", "201", "400", "403", "409", "410", "413", "415", "429", "503"} <= set(redeem)
    assert "INSTALL_ID_CONFLICT" in redeem["409"]["description"]
    assert "AUTH_CODE_ALREADY_USED" in redeem["409"]["description"]
    issue = schema["paths"]["/users/auth-code"]["post"]
    assert "INVALID_API_KEY" in issue["responses"]["401"]["description"]
    assert issue["security"] == [{"ApiKey": []}]


def test_fields_match_the_contract(schema):
    components = schema["components"]["schemas"]
    assert set(components["AuthCode"]["properties"]) == {
        "authentication_code",
        "expires_at",
        "expires_in",
        "user_id",
        "existing_user",
    }
    assert list(components["User"]["properties"]) == [
        "user_id",
        "external_id",
        "status",
        "disabled",
        "created_at",
        "devices",
    ]
    assert components["User"]["properties"]["disabled"]["type"] == "boolean"
    assert "disabled" in components["User"]["required"]
    assert set(components["Device"]["properties"]) == {
        "install_id",
        "platform",
        "form_factor",
        "model",
        "os_version",
        "app_version",
        "sdk_version",
        "active",
        "inactive_reason",
        "activated_at",
        "deactivated_at",
        "last_seen_at",
    }
    assert set(components["Error"]["properties"]) == {
        "errorCode",
        "message",
        "request_id",
        "ref",
        "fields",
    }


def test_the_external_id_query_states_the_limits_the_view_enforces(schema, customer):
    """A schema-driven fuzzer sends what the schema allows; an empty external id is refused."""
    (parameter,) = schema["paths"]["/users"]["get"]["parameters"]
    assert parameter["name"] == "external_id"
    assert parameter["in"] == "query"
    assert parameter["required"] is True
    assert parameter["schema"] == {"type": "string", "minLength": 1, "maxLength": 256}
    assert customer.get("/users?external_id=").status_code == 400
    assert customer.get(f"/users?external_id={'a' * 257}").status_code == 400


def test_docs_page_renders_without_a_cdn(api):
    response = api.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower()
