"""Rate limits hold per key and per client address, on the shared cache."""

import pytest

from tests.helpers import device_payload

pytestmark = pytest.mark.django_db


def _redeem_from(api, app, forwarded_for: str) -> int:
    body = {"authentication_code": "x" * 43, "app_id": app.app_id, "device": device_payload()}
    return api.post(
        "/sdk/users", body, format="json", HTTP_X_FORWARDED_FOR=forwarded_for
    ).status_code


def test_a_forged_forwarded_for_does_not_dodge_the_sdk_limit(api, app, settings):
    settings.THROTTLE_SDK_RATE = "2/min"
    assert [_redeem_from(api, app, f"10.0.0.{n}") for n in range(3)] == [400, 400, 429]


def test_behind_one_proxy_the_forwarded_address_counts(api, app, settings):
    settings.THROTTLE_SDK_RATE = "1/min"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert [_redeem_from(api, app, f"10.0.0.{n}") for n in range(3)] == [400, 400, 400]
    assert _redeem_from(api, app, "10.0.0.1") == 429


@pytest.mark.redis
def test_the_key_limit_is_counted_in_redis(customer, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": settings.TEST_REDIS_URL,
            "KEY_PREFIX": "throttle-test",
        }
    }
    from django.core.cache import cache

    cache.clear()
    settings.THROTTLE_API_KEY_RATE = "3/min"
    answers = [
        customer.post("/users/auth-code", {"external_id": "alice"}, format="json") for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.json()["errorCode"] == "RATE_LIMITED"
    assert 1 <= int(limited["Retry-After"]) <= 60
    keys = cache._cache.get_client().keys("throttle-test:*throttle:key*")
    assert len(keys) == 1  # one counter per key and window, in Redis
    cache.clear()


def test_bad_access_tokens_count_against_the_sdk_limit(api, settings):
    settings.THROTTLE_SDK_RATE = "2/min"
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    answers = [api.get("/sdk/status").status_code for _ in range(3)]
    assert answers == [401, 401, 429]


def test_failed_api_key_checks_are_limited_per_address(api, api_key, settings):
    settings.THROTTLE_AUTH_FAILURE_RATE = "2/min"
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.key_id}.{'x' * 43}")
    body = {"external_id": "alice"}
    answers = [api.post("/users/auth-code", body, format="json") for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert answers[-1].json()["errorCode"] == "RATE_LIMITED"
    assert int(answers[-1]["Retry-After"]) >= 1
    # Even the right key is refused from that address until the window ends: the limit
    # is on guessing, and a key id is public.
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    assert api.post("/users/auth-code", body, format="json").status_code == 429


def test_successful_checks_do_not_count_as_failures(customer, settings):
    settings.THROTTLE_AUTH_FAILURE_RATE = "1/min"
    for _ in range(3):
        assert (
            customer.post("/users/auth-code", {"external_id": "a"}, format="json").status_code
            == 200
        )
