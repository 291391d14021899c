"""Benchmark: every console page of one app with a million users, codes and audit events.

    .venv/bin/python bench/console_pages.py [--users 1000000] [--codes 1000000]
                                            [--events 1000000] [--runs 5] [--keep]

Drops and recreates a dedicated database (default `portal_bench_console`), migrates it and
loads, with set-based SQL (generate_series), one big app among a few small ones: 5 keys, the
users (a tenth pending, the others with an active device: phones and tablets, Android and
iOS), codes spread over the last 30 days (three quarters redeemed; the newest still valid),
audit events over the same days (first redemptions, device and user events, a console
person's key events). The daily activity is then rolled up as the code sweep does
(`services.roll_up_activity`), and the tables are vacuumed and analysed.

An owner of the big app, signed in with password and authenticator, requests every console
page of the app through django.test.Client in this process: per page the status, the server
time (median of --runs requests after one warm-up), the number of SQL queries and the slowest
query. The overview's numbers are compared with a count over the tables themselves.

Exits 1 when a page answers anything but 200, takes more than 300 ms, or when an overview
number is not exact.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import benchdb  # beside this script
from admin_pages import measure  # the admin pages' bench, beside this script

ROOT = Path(__file__).resolve().parent.parent
# bench/http.py would shadow the standard library's http package: the project root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal_bench_console"
TARGET_MS = 300.0
SMALL_APPS = 3
OWNER_EMAIL = "owner@bench.example"


def configure(database_url: str) -> None:
    """The environment the settings read; set before Django is imported."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["SECRET_KEY"] = "bench-console-pages-not-a-secret-" + "x" * 32
    os.environ["DEBUG"] = "false"
    os.environ["REDIS_URL"] = ""
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["PORTAL_PROCESS"] = "batch"  # loading a million rows takes more than 5 s
    os.environ["DATABASE_BATCH_STATEMENT_TIMEOUT"] = "0"
    os.environ["ALLOWED_HOSTS"] = "localhost,testserver"


# Every row derives from its series number; the big app is id 1.
LOAD_APPS = """
    INSERT INTO accounts_app (id, app_id, name, is_active, contact_emails, sdk_config,
                              webhook_events, created_at)
    SELECT a, substr(md5('app-' || a), 1, 24), 'Bench app ' || a, true, '[]'::jsonb,
           '{"log_level": "warn", "features": {"tracking": true}}'::jsonb, '',
           %(now)s::timestamptz - interval '400 days'
    FROM generate_series(1, %(apps)s) AS a
"""
LOAD_KEYS = """
    INSERT INTO accounts_apikey (id, app_id, key_id, secret_digest, name, scopes, created_at,
                                 expires_at, revoked_at, last_used_at, rotated_from_id)
    SELECT k, 1, substr(md5('key-' || k), 1, 16), md5('s' || k) || md5('t' || k),
           'backend ' || k, '["user.link", "user.read", "user.delete"]'::jsonb,
           %(now)s::timestamptz - interval '100 days',
           %(now)s::timestamptz + CASE k WHEN 1 THEN interval '5 days' ELSE interval '200 days' END,
           CASE WHEN k = 5 THEN %(now)s::timestamptz - interval '3 days' END,
           %(now)s::timestamptz - interval '1 hour', NULL
    FROM generate_series(1, 5) AS k
"""
LOAD_USERS = """
    INSERT INTO accounts_linkeduser (id, user_id, app_id, external_id, status, disabled_at,
                                     created_at, deleted_at)
    SELECT g, substr(md5('user-' || g), 1, 24), 1, 'user-' || g,
           CASE WHEN g %% 10 = 0 THEN 'pending' ELSE 'active' END,
           CASE WHEN g %% 1000 = 7 THEN %(now)s::timestamptz - interval '2 days' END,
           %(now)s::timestamptz - interval '60 days' * (1 - g::float / %(users)s), NULL
    FROM generate_series(1, %(users)s) AS g
"""
LOAD_DEVICES = """
    INSERT INTO devices_device (app_id, user_id, install_id, platform, form_factor, model,
        os_version, app_version, sdk_version, is_active, inactive_reason, activated_at,
        deactivated_at, last_seen_at, created_at, access_token_digest, access_token_expires_at)
    SELECT 1, g, 'install-' || g,
           CASE WHEN g %% 3 = 0 THEN 'ios' ELSE 'android' END,
           CASE WHEN g %% 7 = 0 THEN 'tablet' ELSE 'phone' END,
           'Pixel 9', '15', '4.2.0', '2.3.0', true, NULL, t, NULL, t, t, NULL, NULL
    FROM generate_series(1, %(users)s) AS g,
         LATERAL (SELECT %(now)s::timestamptz
                         - interval '60 days' * (1 - g::float / %(users)s) AS t) AS x
    WHERE g %% 10 <> 0
"""
# Codes over the last 30 days, oldest first; the last ones still valid.
LOAD_CODES = """
    INSERT INTO accounts_authcode (code_digest, app_id, user_id, api_key_id, status, created_at,
                                   expires_at, redeemed_at, redeemed_install_id)
    SELECT md5('c' || g) || md5('d' || g), 1, 1 + g %% %(users)s, 1,
           CASE WHEN g %% 4 = 0 THEN 'expired' WHEN t + interval '10 minutes' > %(now)s
                THEN 'issued' ELSE 'redeemed' END,
           t, t + interval '10 minutes',
           CASE WHEN g %% 4 <> 0 AND t + interval '10 minutes' <= %(now)s
                THEN t + interval '1 minute' END,
           ''
    FROM generate_series(1, %(codes)s) AS g,
         LATERAL (SELECT %(now)s::timestamptz
                         - interval '30 days' * (1 - g::float / %(codes)s) AS t) AS x
"""
LOAD_EVENTS = """
    INSERT INTO accounts_auditevent (occurred_at, app_id, actor_type, actor, action, target_type,
                                     target_id, user_ref, details)
    SELECT %(now)s::timestamptz - interval '30 days' * (1 - g::float / %(events)s), 1,
           CASE WHEN g %% 1000 = 0 THEN 'console' ELSE 'device' END,
           CASE WHEN g %% 1000 = 0 THEN %(owner)s ELSE 'install-' || g END,
           CASE WHEN g %% 1000 = 0 THEN 'key.created'
                ELSE (ARRAY['user.created', 'user.restored', 'device.activated',
                            'device.deactivated', 'user.disabled'])[1 + g %% 5] END,
           'user', substr(md5('user-' || (1 + g %% %(users)s)), 1, 24),
           substr(md5('user-' || (1 + g %% %(users)s)), 1, 24), '{}'::jsonb
    FROM generate_series(1, %(events)s) AS g
"""
# The same numbers counted over the tables, for the last 30 UTC days.
EXPECTED = """
    SELECT
      (SELECT count(*) FROM accounts_authcode WHERE app_id = 1 AND created_at >= %(start)s),
      (SELECT count(*) FROM accounts_authcode WHERE app_id = 1 AND redeemed_at >= %(start)s),
      (SELECT count(*) FROM accounts_auditevent
        WHERE app_id = 1 AND action = 'user.created' AND occurred_at >= %(start)s),
      (SELECT count(*) FROM accounts_auditevent
        WHERE app_id = 1 AND action = 'user.restored' AND occurred_at >= %(start)s),
      (SELECT count(*) FROM devices_device WHERE app_id = 1 AND is_active)
"""


def load(users: int, codes: int, events: int) -> None:
    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    params = {
        "now": now,
        "apps": 1 + SMALL_APPS,
        "users": users,
        "codes": codes,
        "events": events,
        "owner": OWNER_EMAIL,
    }
    with connection.cursor() as cursor:
        for name, sql in [
            ("apps", LOAD_APPS),
            ("keys", LOAD_KEYS),
            ("users", LOAD_USERS),
            ("devices", LOAD_DEVICES),
            ("codes", LOAD_CODES),
            ("events", LOAD_EVENTS),
        ]:
            started = time.perf_counter()
            cursor.execute(sql, params)
            print(f"  {name}: {cursor.rowcount} rows in {time.perf_counter() - started:.1f} s")
        for table in ("accounts_app", "accounts_apikey", "accounts_linkeduser"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )


def roll_up_and_vacuum() -> float:
    from django.db import connection

    from accounts import services

    started = time.perf_counter()
    services.roll_up_activity()
    rolled = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return rolled


def owner_client() -> Any:
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.models import App
    from console.models import Membership, Role
    from tests.factories import PersonFactory

    person = PersonFactory(email=OWNER_EMAIL)
    Membership.objects.create(user=person, app=App.objects.get(pk=1), role=Role.OWNER)
    Membership.objects.create(user=PersonFactory(), app=App.objects.get(pk=1), role=Role.VIEWER)
    client = Client()
    client.force_login(person)
    session = client.session
    device = TOTPDevice.objects.create(user=person, name="phone", confirmed=True)
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def pages(users: int) -> list[tuple[str, str]]:
    from django.urls import reverse

    from accounts import services
    from accounts.audit import Actor
    from accounts.models import App, AuditEvent, LinkedUser

    app = App.objects.get(pk=1)
    app_id = app.app_id
    busy = LinkedUser.objects.get(pk=users // 2 + 1)
    deleted = LinkedUser.objects.get(pk=users // 2 + 3)
    deletion = services.request_user_deletion(user=deleted, actor=Actor.console(OWNER_EMAIL))
    key_id = app.api_keys.order_by("pk").values_list("key_id", flat=True)[1]
    middle = AuditEvent.objects.filter(app=app).order_by("-occurred_at", "-id")[50]
    cursor = f"{middle.occurred_at.isoformat()}~{middle.pk}"
    day = middle.occurred_at.date().isoformat()

    def u(name: str, *args: str, **query: str) -> str:
        path = reverse(f"console:{name}", args=[app_id, *args])
        return f"{path}?{urlencode(query)}" if query else path

    return [
        ("overview", u("overview")),
        ("keys", u("keys")),
        ("key create form", u("key_create")),
        ("key rotate form", u("key_rotate", key_id)),
        ("key revoke form", u("key_revoke", key_id)),
        ("users: no search", u("users")),
        ("users: exact external id", u("users", q=busy.external_id)),
        ("users: prefix (many matches)", u("users", q="user-1")),
        ("users: user id", u("users", q=busy.user_id)),
        ("users: no match", u("users", q="nobody")),
        ("user page", u("user_detail", busy.user_id)),
        ("user delete form", u("user_delete", busy.user_id)),
        ("deletion", u("deletion", deletion.request_id)),
        ("sdk configuration", u("config")),
        ("audit log", u("audit")),
        ("audit: older page", u("audit", before=cursor)),
        ("audit: action user.created", u("audit", action="user.created")),
        ("audit: rare action key.created", u("audit", action="key.created")),
        ("audit: actor (console person)", u("audit", actor=OWNER_EMAIL)),
        ("audit: one day", u("audit", since=day, until=day)),
        ("audit: action absent", u("audit", action="team.removed")),
        ("team", u("team")),
    ]


def check_overview(client: Any) -> list[str]:
    """The overview's numbers against a count over the tables themselves."""
    import datetime as dt

    from django.db import connection
    from django.urls import reverse
    from django.utils import timezone

    from accounts.models import App

    response = client.get(reverse("console:overview", args=[App.objects.get(pk=1).app_id]))
    today = timezone.now().astimezone(dt.UTC).date()
    start = dt.datetime.combine(today - dt.timedelta(days=29), dt.time(), tzinfo=dt.UTC)
    with connection.cursor() as cursor:
        cursor.execute(EXPECTED, {"start": start})
        issued, redeemed, new, restored, devices = cursor.fetchone()
    totals = response.context["totals"]
    shown = (
        totals["codes_issued"],
        totals["codes_redeemed"],
        totals["users_new"],
        totals["users_restored"],
        response.context["devices_total"],
    )
    expected = (issued, redeemed, new, restored, devices)
    names = ("codes issued", "codes redeemed", "new users", "restored users", "active devices")
    print("\noverview numbers (shown / counted over the tables):")
    problems = []
    for name, a, b in zip(names, shown, expected, strict=True):
        print(f"  {name:16} {a:>9} / {b:>9} {'exact' if a == b else 'WRONG'}")
        if a != b:
            problems.append(f"overview {name}: shown {a}, counted {b}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    benchdb.drop(args.database_url, [benchdb.database_name(args.database_url)], create=True)
    configure(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the pages' context, to read the overview's numbers

    try:
        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        print(f"migrated in {time.perf_counter() - started:.1f} s; loading:")
        load(args.users, args.codes, args.events)
        print(f"  roll-up of the daily activity: {roll_up_and_vacuum():.1f} s")
        client = owner_client()
        problems = check_overview(client)
        print(
            f"\n{args.users} users, {args.codes} codes, {args.events} audit events; "
            f"{platform.python_implementation()} {platform.python_version()}, median of "
            f"{args.runs} (ms)\n"
        )
        print("| page | status | server ms | queries | slowest query ms |\n|---|---|---|---|---|")
        for name, url in pages(args.users):
            m = measure(client, url, args.runs)
            print(f"| {name} | {m.status} | {m.ms:.1f} | {m.queries} | {m.slowest_ms:.1f} |")
            if m.status != 200:
                problems.append(f"{name}: status {m.status}")
            if m.ms > TARGET_MS:
                problems.append(
                    f"{name}: {m.ms:.0f} ms > {TARGET_MS:.0f} ms ({m.slowest_sql[:300]})"
                )
        for problem in problems:
            print("FAIL", problem)
        print("\nverdict:", "FAIL" if problems else "ok")
        return 1 if problems else 0
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            benchdb.drop(args.database_url, [benchdb.database_name(args.database_url)])


if __name__ == "__main__":
    sys.exit(main())
