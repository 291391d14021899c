"""Rate limits hold per key and per client address; failed key checks refuse only failures.
What happens when their store fails: test_redis_faults.py."""

import pytest
import redis

from tests.helpers import device_payload

pytestmark = pytest.mark.django_db


def _redeem_from(api, app, forwarded_for: str) -> int:
    body = {"authentication_code": "x" * 43, "app_id": app.app_id, "device": device_payload()}
    return api.post(
        "/sdk/users", body, format="json", HTTP_X_FORWARDED_FOR=forwarded_for
    ).status_code


def _issue(client, external_id: str = "alice"):
    return client.post("/users/auth-code", {"external_id": external_id}, format="json")


def test_a_forged_forwarded_for_does_not_dodge_the_sdk_limit(api, app, settings):
    settings.THROTTLE_SDK_RATE = "2/min"
    assert [_redeem_from(api, app, f"10.0.0.{n}") for n in range(3)] == [400, 400, 429]


def test_behind_one_proxy_the_forwarded_address_counts(api, app, settings):
    settings.THROTTLE_SDK_RATE = "1/min"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert [_redeem_from(api, app, f"10.0.0.{n}") for n in range(3)] == [400, 400, 400]
    assert _redeem_from(api, app, "10.0.0.1") == 429


def test_each_429_names_its_limit(customer, api, app, settings):
    settings.THROTTLE_API_KEY_RATE = "1/min"
    settings.THROTTLE_SDK_RATE = "1/min"
    assert _issue(customer).status_code == 200
    by_key = _issue(customer)
    assert by_key.status_code == 429
    assert by_key.json()["errorCode"] == "RATE_LIMITED"
    assert "'api_key'" in by_key.json()["message"]
    assert "1 per minute for this API key" in by_key.json()["message"]
    assert 1 <= int(by_key["Retry-After"]) <= 60

    assert _redeem_from(api, app, "") == 400
    by_address = api.post("/sdk/users", {}, format="json")
    assert by_address.status_code == 429
    assert "'sdk'" in by_address.json()["message"]


@pytest.mark.redis
def test_the_key_limit_is_counted_in_redis_in_one_round_trip(customer, settings):
    settings.REDIS_URL = settings.TEST_REDIS_URL
    settings.THROTTLE_API_KEY_RATE = "3/min"
    settings.THROTTLE_REDIS_TIMEOUT = 5  # a busy machine (parallel tests) must not fail it open
    client = redis.Redis.from_url(settings.TEST_REDIS_URL)  # the key id is new: no old count

    answers = [_issue(customer) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    [key] = list(client.scan_iter(f"portal:throttle:api_key:{customer.api_key.key_id}:*"))
    assert int(client.get(key)) == 4
    assert 0 < client.ttl(key) <= 61  # the window's counter expires with the window
    client.delete(key)


def test_bad_access_tokens_count_against_the_sdk_limit(api, settings):
    settings.THROTTLE_SDK_RATE = "2/min"
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    answers = [api.get("/sdk/status").status_code for _ in range(3)]
    assert answers == [401, 401, 429]


def test_a_valid_key_is_never_refused_for_failed_checks(api, api_key, settings):
    """100 failures from one address, naming the key's own id and unknown ids: the failures
    are refused once over their limits, the right key from the same address still works."""
    settings.THROTTLE_AUTH_FAILURE_RATE = "5/min"
    settings.THROTTLE_AUTH_FAILURE_ADDRESS_RATE = "20/min"
    guesses = [f"Bearer {api_key.key_id}.{'x' * 43}"] * 50 + [
        f"Bearer {n:016x}.{'x' * 43}" for n in range(50)
    ]
    answers = []
    for guess in guesses:
        api.credentials(HTTP_AUTHORIZATION=guess)
        answers.append(_issue(api))

    same_key, unknown = answers[:50], answers[50:]
    assert [a.status_code for a in same_key] == [401] * 5 + [429] * 45
    assert "'api_key_failures'" in same_key[-1].json()["message"]
    assert [a.status_code for a in unknown] == [401] * 20 + [429] * 30
    assert "'address_failures'" in unknown[-1].json()["message"]

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.full_key}")
    assert _issue(api).status_code == 200


def test_successful_checks_do_not_count_as_failures(customer, settings):
    settings.THROTTLE_AUTH_FAILURE_RATE = "1/min"
    settings.THROTTLE_AUTH_FAILURE_ADDRESS_RATE = "1/min"
    for _ in range(3):
        assert _issue(customer, "a").status_code == 200


@pytest.mark.redis
def test_far_from_its_limit_a_counter_goes_to_redis_once_per_flush_interval(
    customer, settings, monkeypatch
):
    """The per-key limit, far from its limit, is batched: requests admitted within
    FLUSH_SECONDS of a round trip are added at the next one; none is lost from the count."""
    from portal import throttling

    settings.REDIS_URL = settings.TEST_REDIS_URL
    settings.THROTTLE_API_KEY_RATE = "1000/min"
    settings.THROTTLE_REDIS_TIMEOUT = 5
    monkeypatch.setattr(throttling, "FLUSH_SECONDS", 3600)  # no flush in this test's time
    client = redis.Redis.from_url(settings.TEST_REDIS_URL)
    pattern = f"portal:throttle:api_key:{customer.api_key.key_id}:*"

    assert [_issue(customer, f"user-{n}").status_code for n in range(5)] == [200] * 5
    [key] = list(client.scan_iter(pattern))
    assert int(client.get(key)) == 1  # the first went to Redis; four wait for the next trip

    monkeypatch.setattr(throttling, "FLUSH_SECONDS", 0)
    assert _issue(customer, "user-5").status_code == 200
    assert int(client.get(key)) == 6  # the four, and this one
    client.delete(key)


@pytest.mark.redis
def test_near_its_limit_every_request_is_counted_in_redis(customer, settings, monkeypatch):
    """From EXACT_FROM of the limit on, batching stops: the limit is as exact as unbatched,
    here with another process's requests already in Redis."""
    from portal import throttling

    settings.REDIS_URL = settings.TEST_REDIS_URL
    settings.THROTTLE_API_KEY_RATE = "10/min"
    settings.THROTTLE_REDIS_TIMEOUT = 5
    monkeypatch.setattr(throttling, "FLUSH_SECONDS", 3600)
    client = redis.Redis.from_url(settings.TEST_REDIS_URL)

    answers = [_issue(customer, f"user-{n}").status_code for n in range(5)]  # 1 sent, 4 held
    [key] = list(client.scan_iter(f"portal:throttle:api_key:{customer.api_key.key_id}:*"))
    client.incrby(key, 3)  # another process: 4 in Redis, 8 as this process sees it
    answers += [_issue(customer, f"user-{n}").status_code for n in range(5, 9)]

    # The 8th is at 80 %: it sends the 7 held with itself and finds 11 > 10 in Redis.
    assert answers == [200] * 5 + [200, 200, 429, 429]
    assert int(client.get(key)) == 9 + 3  # every request of this process, and the other's
    client.delete(key)


@pytest.mark.redis
def test_batched_processes_together_overshoot_a_limit_by_at_most_what_each_holds_back(
    settings, monkeypatch
):
    """Two processes (two stores) counting one client at once, with no flush by time: the
    client gets its limit, and past it at most 1 % of the limit held back by the other."""
    import uuid

    from portal import throttling

    settings.REDIS_URL = settings.TEST_REDIS_URL
    settings.THROTTLE_REDIS_TIMEOUT = 5
    monkeypatch.setattr(throttling, "FLUSH_SECONDS", 3600)
    processes = [throttling._Store(), throttling._Store()]
    key, limit = f"portal:throttle:test:{uuid.uuid4().hex}:0", 1000

    admitted = 0
    for n in range(1500):
        count = processes[n % 2].batched_hit(key, 60, "test", limit)
        admitted += count is not None and count <= limit

    assert limit <= admitted <= limit + throttling.HOLD_BACK * limit
    redis.Redis.from_url(settings.TEST_REDIS_URL).delete(key)
