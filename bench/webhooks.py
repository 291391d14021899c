"""What the webhook outbox costs issuance and redemption: an app without an endpoint and an
app with one, side by side in one run.

    .venv/bin/python bench/webhooks.py [--requests 1500] [--rounds 3] [--keep]

Drops and recreates a throwaway PostgreSQL database (default `bench_webhooks`; its name must
say `bench`), migrates, creates app A (no endpoint) and app B (one endpoint wanting every
event type), each with a key. Requests go through the whole Django stack in-process (the
test client: middleware, authentication, throttles on Redis, the view, the service), so the
figures are server time without the network, where the outbox's share is largest. The
broker is the Redis DB of `--redis-url` (default DB 13, flushed: give it one of its own):
B's commits send the dispatcher's wake-up there as in production (at most two a second per
process); no worker runs, so nothing is delivered and the receiver costs nothing.

Per round: `--requests` issuances for each app, alternating A and B request by request (a
new external id each time; issuance writes no event, endpoint or not), then as many
redemptions of codes issued beforehand (a new user's first device: B writes a `user.created`
and a `device.activated`). Prints p50 and p99 per app and B's p50 divided by A's, per round
and the median over rounds, and the queries one request makes for each app. Exits 1 when a
median ratio exceeds 1.15 (issue 13), or the events written are not two per B redemption and
none per issuance.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/http.py is named like the standard library's `http`: this folder must not be on the
# import path (see bench/http.py).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from bench import benchdb  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_webhooks"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
BOUND = 1.15
WARM_UP = 200


def configure(database_url: str, redis_url: str) -> None:
    """The environment the settings read; set before Django is imported."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["PORTAL_PROCESS"] = "web"
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["DEBUG"] = "false"
    os.environ["THROTTLE_API_KEY_RATE"] = "1000000000/min"
    os.environ["THROTTLE_SDK_RATE"] = "1000000000/min"
    os.environ["WEBHOOK_ALLOW_HTTP"] = "true"
    os.environ["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "true"
    os.environ["LOG_LEVEL"] = "WARNING"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    configure(args.database_url, args.redis_url)
    benchdb.drop(args.database_url, [benchdb.database_name(args.database_url)], create=True)
    try:
        return run(args)
    finally:
        import redis
        from django.db import connections

        connections.close_all()
        redis.Redis.from_url(args.redis_url).flushdb()
        if not args.keep:
            benchdb.drop(args.database_url, [benchdb.database_name(args.database_url)])


def run(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts import services as account_services
    from accounts.audit import Actor
    from events import services as event_services
    from events.models import Event

    call_command("migrate", verbosity=0)
    operator = Actor.operator("bench")
    apps, keys = {}, {}
    for name in ("A", "B"):
        apps[name] = account_services.create_app(name=f"bench {name}")
        keys[name] = account_services.create_api_key(
            app=apps[name], name="bench", scopes=["user.link"], actor=operator
        ).full_key
    event_services.create_endpoint(app=apps["B"], url="http://127.0.0.1:9/hook", actor=operator)
    client = Client(SERVER_NAME="localhost")
    serial = iter(range(10**9))

    def issue(name: str) -> tuple[float, dict[str, Any]]:
        body = json.dumps({"external_id": f"user-{next(serial)}"})
        started = time.perf_counter()
        answer = client.post(
            "/users/auth-code",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {keys[name]}",
        )
        spent = time.perf_counter() - started
        assert answer.status_code == 200, answer.content
        return spent, answer.json()

    def redeem(name: str, code: str) -> float:
        body = json.dumps(
            {
                "authentication_code": code,
                "app_id": apps[name].app_id,
                "device": {
                    "install_id": f"install-{next(serial)}",
                    "platform": "android",
                    "form_factor": "phone",
                },
            }
        )
        started = time.perf_counter()
        answer = client.post("/sdk/users", body, content_type="application/json")
        spent = time.perf_counter() - started
        assert answer.status_code == 201, answer.content
        return spent

    for _ in range(WARM_UP):
        for name in ("A", "B"):
            redeem(name, issue(name)[1]["authentication_code"])

    queries = {}
    for name in ("A", "B"):
        with CaptureQueriesContext(connection) as issued:
            code = issue(name)[1]["authentication_code"]
        with CaptureQueriesContext(connection) as redeemed:
            redeem(name, code)
        queries[name] = (len(issued), len(redeemed))

    ratios: dict[str, list[float]] = {"issuance": [], "redemption": []}
    written = {"issuance": 0, "redemption": 0}
    for round_number in range(1, args.rounds + 1):
        times: dict[str, dict[str, list[float]]] = {
            "issuance": {"A": [], "B": []},
            "redemption": {"A": [], "B": []},
        }
        codes: dict[str, list[str]] = {"A": [], "B": []}
        before = Event.objects.count()
        for index in range(args.requests):
            order = ("A", "B") if index % 2 == 0 else ("B", "A")
            for name in order:
                spent, answer = issue(name)
                times["issuance"][name].append(spent)
                codes[name].append(answer["authentication_code"])
        issued = Event.objects.count()
        for index in range(args.requests):
            order = ("A", "B") if index % 2 == 0 else ("B", "A")
            for name in order:
                times["redemption"][name].append(redeem(name, codes[name][index]))
        written["issuance"] += issued - before
        written["redemption"] += Event.objects.count() - issued
        for what, by_app in times.items():
            a50, b50 = (statistics.median(by_app[name]) for name in ("A", "B"))
            ratio = b50 / a50
            ratios[what].append(ratio)
            print(
                f"round {round_number} {what:<10}  "
                f"A p50 {a50 * 1000:6.2f} ms p99 {percentile(by_app['A'], 0.99) * 1000:6.2f} ms"
                f"  B p50 {b50 * 1000:6.2f} ms p99 {percentile(by_app['B'], 0.99) * 1000:6.2f} ms"
                f"  B/A {ratio:.3f}"
            )
    expected = {"issuance": 0, "redemption": 2 * args.requests * args.rounds}
    print(
        f"queries per request (issuance, redemption): A {queries['A']}, B {queries['B']}; "
        f"events written during the rounds: {written} (expected {expected})"
    )
    failed = written != expected
    for what, found in ratios.items():
        median = statistics.median(found)
        verdict = "ok" if median <= BOUND else f"MISSED (bound {BOUND})"
        print(f"{what}: B/A p50 median {median:.3f} over {len(found)} rounds: {verdict}")
        failed = failed or median > BOUND
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
