"""Benchmark: every staff admin page at a million users and devices, on PostgreSQL.

    .venv/bin/python bench/admin_pages.py [--users 1000000] [--small-users 1000] [--runs 5]
                                          [--explain-ms 50] [--keep]

Drops and recreates two dedicated databases (default `portal_bench_admin` for the big
fixture and `portal_bench_admin_small` for the baseline) and migrates them. Each gets its
fixture with set-based SQL (INSERT … SELECT … FROM generate_series, then VACUUM ANALYZE),
the same shape at two scales: 20 apps with 5 keys each (active, rotated, in grace, revoked,
expired), the users (active, pending, deleted, some disabled), about one device per user
(at most one active; a tablet or a replaced phone for some users, four devices for one
user in a thousand), two authentication codes per user spread over the last 8 days (plus
25 for each of those busy users), an audit event per user plus timelines and key events,
and the deletion requests of deleted and purged users.

In each database a superuser and a "Support" staff member (`accounts.roles.setup_roles`)
request every page through django.test.Client in this process: the dashboard, every list
(plain, searched by exact id and by prefix, with each value of each filter, pages 2 and 20),
the page of one object of each model, and the action confirmation pages. Per page: the
status, the server time (median of --runs requests after one warm-up, measured around
client.get), the number of SQL queries and the slowest query's time (CaptureQueriesContext).
A page is measured on the big fixture, then at once on the small one, so that the ratio
compares measurements taken next to each other in time on a machine shared with others.
Pages whose slowest query takes --explain-ms or more get that query's EXPLAIN (ANALYZE,
BUFFERS) printed.

Exits 1 when a page of the big fixture answers anything but 200 or takes more than 300 ms,
or a page of the small fixture answers anything but 200.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import benchdb  # beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal_bench_admin"
TARGET_MS = 300.0
APPS = 20
BUSY_EVERY = 1000  # one user in this many has four devices, 27 codes and 60 events
BUSY_REMAINDER = 321  # id mod BUSY_EVERY of the busy users: active, enabled, a phone first
BUSY_CODES = 25
BUSY_EVENTS = 60
PER_PAGE = 50  # StaffAdmin.list_per_page
ROLES = ("root", "support")
MAX_PLANS = 12


def configure(database_url: str) -> None:
    """The environment the settings read; set before Django is imported."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["SECRET_KEY"] = "bench-admin-pages-not-a-secret-" + "x" * 32
    os.environ["DEBUG"] = "false"  # DEBUG keeps every query in memory
    os.environ["REDIS_URL"] = ""  # local-memory cache
    os.environ["LOG_LEVEL"] = "WARNING"


def database_names(database_url: str) -> tuple[str, str]:
    """(big, small): the small fixture lives in a sibling database."""
    big = benchdb.database_name(database_url)
    return big, f"{big}_small"


def recreate_databases(database_url: str) -> None:
    benchdb.drop(database_url, database_names(database_url), create=True)


def drop_databases(database_url: str) -> None:
    benchdb.drop(database_url, database_names(database_url))


def use_database(name: str) -> None:
    """Points the default connection at another database of the same server; the next
    query connects to it (so a page's warm-up request pays for the connection)."""
    from django.db import connection

    if connection.settings_dict["NAME"] != name:
        connection.close()
        connection.settings_dict["NAME"] = name


# --------------------------------------------------------------------------- the fixture

# Every statement derives its rows from the series number alone (users: g = id), so the
# same SQL builds both fixtures and the objects the pages open are found by formula.
# Rows go in in time order, so ids grow with time as in production.

LOAD_APPS = """
    INSERT INTO accounts_app (id, app_id, name, is_active, contact_emails, sdk_config, created_at)
    SELECT a, substr(md5('app-' || a), 1, 24), 'Bench app ' || a, mod(a, 10) <> 0,
           jsonb_build_array('ops-' || a || '@example.com', 'support@example.com'),
           '{"log_level": "warn", "features": {"tracking": true}}'::jsonb,
           %(now)s::timestamptz - interval '500 days' + a * interval '1 day'
    FROM generate_series(1, %(apps)s) AS a
"""

# Per app: 1 active (for some apps expiring within 14 days), 2 the successor of 3, which is
# in its grace period, 4 revoked, 5 expired.
LOAD_KEYS = """
    INSERT INTO accounts_apikey (
        id, app_id, key_id, secret_digest, name, scopes, created_at, expires_at, revoked_at,
        last_used_at, rotated_from_id
    )
    SELECT (a - 1) * 5 + k, a,
           substr(md5('key-' || a || '-' || k), 1, 16),
           encode(sha256(convert_to('secret-' || a || '-' || k, 'UTF8')), 'hex'),
           (ARRAY['backend', 'backend (rotated)', 'backend (old)', 'staging', 'legacy'])[k],
           '["user.link", "user.read", "user.delete"]'::jsonb,
           %(now)s::timestamptz - interval '450 days' + k * interval '30 days',
           %(now)s::timestamptz + CASE k
               WHEN 1 THEN CASE WHEN mod(a, 4) = 0 THEN interval '10 days' ELSE '300 days' END
               WHEN 2 THEN interval '360 days'
               WHEN 3 THEN interval '2 days'
               WHEN 4 THEN interval '200 days'
               ELSE interval '-20 days'
           END,
           CASE WHEN k = 4 THEN %(now)s::timestamptz - interval '30 days' END,
           CASE WHEN k <= 3 THEN %(now)s::timestamptz - k * interval '1 minute' END,
           CASE WHEN k = 2 THEN (a - 1) * 5 + 3 END
    FROM generate_series(1, %(apps)s) AS a, generate_series(1, 5) AS k
"""

# 2 % deleted, 8 % pending, the rest active; 1 % disabled. Created over the last 400 days.
LOAD_USERS = """
    INSERT INTO accounts_linkeduser (
        id, user_id, app_id, external_id, status, disabled_at, created_at, deleted_at
    )
    SELECT g, substr(md5(g::text), 1, 24), 1 + mod(g, %(apps)s),
           'customer-' || g || '@example.com',
           CASE WHEN mod(g, 50) = 0 THEN 'deleted'
                WHEN mod(g, 50) BETWEEN 1 AND 4 THEN 'pending'
                ELSE 'active' END,
           CASE WHEN mod(g, 100) = 7 THEN t.created + interval '3 days' END,
           t.created,
           CASE WHEN mod(g, 50) = 0 THEN t.created + interval '10 days' END
    FROM generate_series(1, %(users)s) AS g,
    LATERAL (
        SELECT %(now)s::timestamptz - interval '400 days' * (1 - g::float8 / %(users)s)
               - interval '1 day' AS created
    ) AS t
"""

# Device 1 of every user: a phone (a tablet for 1 in 20), active when the user is active
# and for 6 in 7 of them; otherwise inactive with a reason. Device 2 (1 user in 10, and the
# busy users): a tablet waiting behind the phone. Devices 3 and 4 (busy users): phones that
# were replaced, with a token still (so one can be made active again).
LOAD_DEVICES = """
    INSERT INTO devices_device (
        app_id, user_id, install_id, platform, form_factor, model, os_version, app_version,
        sdk_version, is_active, inactive_reason, activated_at, deactivated_at, last_seen_at,
        created_at, access_token_digest, access_token_expires_at
    )
    SELECT u.app_id, u.id, 'inst-' || md5(u.id || '-' || k), d.platform, d.form_factor,
           CASE WHEN d.form_factor = 'tablet' THEN
                    CASE d.platform WHEN 'ios' THEN 'iPad Air' ELSE 'Galaxy Tab S9' END
                WHEN d.platform = 'ios' THEN
                    (ARRAY['iPhone 15', 'iPhone 14', 'iPhone SE'])[1 + mod(u.id, 3)]
                ELSE (ARRAY['Pixel 8', 'Galaxy S23', 'Pixel 7a', 'Moto G84'])[1 + mod(u.id, 4)]
           END,
           CASE d.platform WHEN 'ios' THEN '17.4' ELSE '14' END,
           '3.' || mod(u.id, 12), '2.1.0',
           d.active,
           CASE WHEN d.active THEN NULL
                WHEN u.status = 'deleted' THEN 'USER_DELETED'
                WHEN k = 2 THEN 'PHONE_PREFERRED'
                WHEN k > 2 THEN 'REPLACED_BY_NEWER_DEVICE'
                WHEN u.status = 'pending' THEN 'RESET'
                ELSE (ARRAY['REPLACED_BY_NEWER_DEVICE', 'RESET', 'DEACTIVATED_BY_SUPPORT'])
                     [1 + mod(u.id / 7, 3)]
           END,
           u.created_at + k * interval '1 hour',
           CASE WHEN NOT d.active THEN u.created_at + interval '20 days' END,
           %(now)s::timestamptz - mod(u.id, 1000) * interval '10 minutes',
           u.created_at + k * interval '1 hour',
           CASE WHEN d.token
                THEN md5('tok-' || u.id || '-' || k) || md5('tok2-' || u.id || '-' || k) END,
           CASE WHEN d.token THEN %(now)s::timestamptz + interval '7 days' END
    FROM accounts_linkeduser AS u,
    LATERAL generate_series(
        1, CASE WHEN mod(u.id, %(busy_every)s) = %(busy)s THEN 4
                WHEN mod(u.id, 10) = 3 THEN 2 ELSE 1 END
    ) AS k,
    LATERAL (
        SELECT CASE WHEN k = 1 AND mod(u.id, 3) <> 0 OR k > 2 THEN 'android' ELSE 'ios' END
                   AS platform,
               CASE WHEN k = 2 OR k = 1 AND mod(u.id, 20) = 0 THEN 'tablet' ELSE 'phone' END
                   AS form_factor,
               k = 1 AND u.status = 'active' AND mod(u.id, 7) <> 0 AS active
    ) AS s,
    LATERAL (
        SELECT s.platform, s.form_factor, s.active,
               s.active OR mod(u.id, %(busy_every)s) = %(busy)s AND u.status <> 'deleted'
                   AS token
    ) AS d
    ORDER BY u.id, k
"""

# Two codes per user spread evenly over the last 8 days (code g belongs to user
# 1 + (g - 1) mod users), and 25 more for each busy user; issued by one of the app's two
# active keys. 70 % redeemed 20 s after issue by the user's first device, 3 % void (deleted
# users), the others expired, or still issued when younger than their 10 minutes.
LOAD_CODES = """
    INSERT INTO accounts_authcode (
        code_digest, app_id, user_id, api_key_id, status, created_at, expires_at, redeemed_at,
        redeemed_install_id
    )
    SELECT encode(sha256(convert_to('code-' || c.g, 'UTF8')), 'hex'),
           1 + mod(c.u, %(apps)s), c.u, mod(c.u, %(apps)s) * 5 + 1 + mod(c.g, 2),
           s.status, c.created, c.created + interval '10 minutes',
           CASE WHEN s.status = 'redeemed' THEN c.created + interval '20 seconds' END,
           CASE WHEN s.status = 'redeemed' THEN 'inst-' || md5(c.u || '-1') ELSE '' END
    FROM (
        SELECT g, 1 + mod(g - 1, %(users)s) AS u,
               %(now)s::timestamptz - interval '8 days' * (1 - g::float8 / (2 * %(users)s))
                   - interval '1 minute' AS created
        FROM generate_series(1, 2 * %(users)s) AS g
        UNION ALL
        SELECT 2 * %(users)s + b * %(busy_codes)s + j, b * %(busy_every)s + %(busy)s,
               %(now)s::timestamptz - j * interval '7 hours' - b * interval '1 second'
        FROM generate_series(0, (%(users)s - %(busy)s) / %(busy_every)s) AS b,
             generate_series(1, %(busy_codes)s) AS j
    ) AS c,
    LATERAL (
        SELECT CASE WHEN mod(c.u, 50) = 0 THEN 'void'
                    WHEN mod(c.g, 10) < 7 THEN 'redeemed'
                    WHEN c.created + interval '10 minutes' > %(now)s::timestamptz THEN 'issued'
                    ELSE 'expired' END AS status
    ) AS s
    ORDER BY c.created
"""

# One event per user (mostly user.created, then device and support events), user.deleted
# for deleted users, 60 events more for each busy user, and the keys' and apps' events.
LOAD_EVENTS = """
    INSERT INTO accounts_auditevent (
        occurred_at, app_id, actor_type, actor, action, target_type, target_id, user_ref,
        details
    )
    SELECT e.occurred_at, e.app_id, e.actor_type, e.actor, e.action, e.target_type,
           e.target_id, e.user_ref, e.details
    FROM (
        SELECT u.created_at + interval '1 second' * n AS occurred_at, u.app_id,
               CASE WHEN v.kind IN ('user.created', 'user.restored') THEN 'api_key'
                    WHEN v.kind IN ('user.disabled', 'user.enabled', 'support') THEN 'staff'
                    ELSE 'device' END AS actor_type,
               CASE WHEN v.kind IN ('user.created', 'user.restored')
                        THEN substr(md5('key-' || u.app_id || '-1'), 1, 16)
                    WHEN v.kind IN ('user.disabled', 'user.enabled', 'support')
                        THEN 'support-' || mod(u.id, 7)
                    ELSE 'inst-' || md5(u.id || '-1') END AS actor,
               CASE v.kind WHEN 'support' THEN 'device.deactivated' ELSE v.kind END AS action,
               CASE WHEN v.kind LIKE 'user.%%' THEN 'user' ELSE 'device' END AS target_type,
               CASE WHEN v.kind LIKE 'user.%%' THEN u.user_id
                    ELSE 'inst-' || md5(u.id || '-1') END AS target_id,
               u.user_id AS user_ref,
               CASE v.kind
                   WHEN 'user.created' THEN jsonb_build_object(
                       'issued_by_key', substr(md5('key-' || u.app_id || '-1'), 1, 16))
                   WHEN 'device.activated' THEN jsonb_build_object('platform', 'android')
                   WHEN 'device.deactivated' THEN
                       jsonb_build_object('reason', 'REPLACED_BY_NEWER_DEVICE')
                   WHEN 'support' THEN jsonb_build_object('reason', 'DEACTIVATED_BY_SUPPORT')
                   ELSE '{}'::jsonb END AS details
        FROM accounts_linkeduser AS u,
        LATERAL generate_series(
            0, CASE WHEN mod(u.id, %(busy_every)s) = %(busy)s THEN %(busy_events)s ELSE 0 END
        ) AS n,
        LATERAL (
            SELECT CASE WHEN n = 0 THEN
                       CASE WHEN mod(u.id, 100) < 60 THEN 'user.created'
                            WHEN mod(u.id, 100) < 85 THEN 'device.activated'
                            WHEN mod(u.id, 100) < 93 THEN 'device.deactivated'
                            WHEN mod(u.id, 100) < 97 THEN 'user.restored'
                            WHEN mod(u.id, 100) = 97 THEN 'user.disabled'
                            WHEN mod(u.id, 100) = 98 THEN 'user.enabled'
                            ELSE 'support' END
                   ELSE (ARRAY['device.activated', 'device.deactivated', 'user.restored',
                               'support', 'user.disabled', 'user.enabled'])[1 + mod(n, 6)]
                   END AS kind
        ) AS v
        UNION ALL
        SELECT u.deleted_at, u.app_id, 'api_key', substr(md5('key-' || u.app_id || '-1'), 1, 16),
               'user.deleted', 'user', u.user_id, u.user_id,
               jsonb_build_object('request_id', substr(md5('deletion-' || u.id), 1, 24))
        FROM accounts_linkeduser AS u WHERE u.status = 'deleted'
        UNION ALL
        SELECT k.created_at, k.app_id, 'operator', 'ops', 'key.created', 'api_key', k.key_id, '',
               jsonb_build_object('name', k.name)
        FROM accounts_apikey AS k
        UNION ALL
        SELECT coalesce(k.revoked_at, k.expires_at), k.app_id,
               CASE WHEN k.revoked_at IS NULL THEN 'system' ELSE 'staff' END,
               CASE WHEN k.revoked_at IS NULL THEN 'expiry' ELSE 'keyadmin' END,
               CASE WHEN k.revoked_at IS NULL THEN 'key.expired' ELSE 'key.revoked' END,
               'api_key', k.key_id, '', '{}'::jsonb
        FROM accounts_apikey AS k
        WHERE k.revoked_at IS NOT NULL OR k.expires_at <= %(now)s::timestamptz
        UNION ALL
        SELECT n.created_at, n.app_id, 'operator', 'ops', 'key.rotated', 'api_key', o.key_id,
               '', jsonb_build_object('successor', n.key_id)
        FROM accounts_apikey AS n JOIN accounts_apikey AS o ON o.id = n.rotated_from_id
        UNION ALL
        SELECT %(now)s::timestamptz - interval '40 days', a.id, 'staff', 'keyadmin',
               'app.updated', 'app', a.app_id, '', jsonb_build_object('fields', 'sdk_config')
        FROM accounts_app AS a
        UNION ALL
        SELECT %(now)s::timestamptz - interval '400 days' * (1 - g::float8 / %(purged)s),
               1 + mod(g, %(apps)s), 'system', 'purge', 'user.purged', 'user',
               substr(md5('purged-' || g), 1, 24), substr(md5('purged-' || g), 1, 24),
               '{}'::jsonb
        FROM generate_series(1, %(purged)s) AS g
    ) AS e
    ORDER BY e.occurred_at
"""

# Done requests of purged users (no user row any more), then the pending requests of the
# deleted users.
LOAD_DELETIONS = """
    INSERT INTO accounts_deletionrequest (
        request_id, app_id, user_id, deleted_user_id, requested_by_key_id, status,
        requested_at, completed_at
    )
    SELECT substr(md5('purged-request-' || g), 1, 24), 1 + mod(g, %(apps)s), NULL::bigint,
           substr(md5('purged-' || g), 1, 24),
           substr(md5('key-' || (1 + mod(g, %(apps)s)) || '-1'), 1, 16), 'done',
           %(now)s::timestamptz - interval '400 days' * (1 - g::float8 / %(purged)s)
               - interval '1 hour',
           %(now)s::timestamptz - interval '400 days' * (1 - g::float8 / %(purged)s)
    FROM generate_series(1, %(purged)s) AS g
    UNION ALL
    SELECT * FROM (
        SELECT substr(md5('deletion-' || u.id), 1, 24), u.app_id, u.id, u.user_id,
               substr(md5('key-' || u.app_id || '-1'), 1, 16), 'pending', u.deleted_at,
               NULL::timestamptz
        FROM accounts_linkeduser AS u WHERE u.status = 'deleted' ORDER BY u.id
    ) AS pending
"""

DOMAIN_TABLES = (
    "accounts_app",
    "accounts_apikey",
    "accounts_apikeynotice",
    "accounts_linkeduser",
    "accounts_authcode",
    "accounts_auditevent",
    "accounts_deletionrequest",
    "devices_device",
)


@dataclass
class Fixture:
    users: int
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def load_fixture(users: int) -> Fixture:
    """Loads `users` users and everything around them into the current database."""
    from django.db import connection
    from django.utils import timezone

    fixture = Fixture(users)
    params = {
        "now": timezone.now(),
        "apps": APPS,
        "users": users,
        "busy_every": BUSY_EVERY,
        "busy": BUSY_REMAINDER,
        "busy_codes": BUSY_CODES,
        "busy_events": BUSY_EVENTS,
        "purged": max(users // 50, 1),
    }
    steps = [
        ("accounts_app", LOAD_APPS),
        ("accounts_apikey", LOAD_KEYS),
        ("accounts_linkeduser", LOAD_USERS),
        ("devices_device", LOAD_DEVICES),
        ("accounts_authcode", LOAD_CODES),
        ("accounts_auditevent", LOAD_EVENTS),
        ("accounts_deletionrequest", LOAD_DELETIONS),
    ]
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        for table, statement in steps:
            started = time.perf_counter()
            cursor.execute(statement, params)
            fixture.rows[table] = cursor.rowcount
            fixture.seconds[table] = time.perf_counter() - started
        for table in ("accounts_app", "accounts_apikey", "accounts_linkeduser"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
        started = time.perf_counter()
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for table in DOMAIN_TABLES:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("CHECKPOINT")
        cursor.execute("SET synchronous_commit = on")
        fixture.seconds["VACUUM ANALYZE"] = time.perf_counter() - started
    return fixture


def table_sizes() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relname = ANY(%s) ORDER BY pg_total_relation_size(oid) DESC",
            [list(DOMAIN_TABLES)],
        )
        return dict(cursor.fetchall())


# --------------------------------------------------------------------------- the pages


@dataclass(frozen=True)
class Page:
    name: str
    url: str
    roles: tuple[str, ...] = ROLES
    available: bool = True
    """False when the fixture has too few rows for the page (a page number past the end)."""


@dataclass(frozen=True)
class Objects:
    """The objects whose pages are opened, and what the searches look for."""

    user: Any
    phone: Any
    replaced_phone: Any
    key: Any
    app: Any
    code: Any
    deletion: Any
    event: Any


def typical_objects(users: int) -> Objects:
    """A busy user (four devices, 27 codes, 61 events) in the middle of the id range, with
    an active phone and a replaced phone that still has a token; one of its codes and
    events, a rotated key, a pending deletion request."""
    from django.db.models.functions import Mod

    from accounts.models import ApiKey, App, AuditEvent, AuthCode, DeletionRequest, LinkedUser
    from devices.models import Device

    first = (users // 2) // BUSY_EVERY * BUSY_EVERY + BUSY_REMAINDER
    user = (
        LinkedUser.objects.alias(remainder=Mod("pk", BUSY_EVERY))
        .filter(
            remainder=BUSY_REMAINDER,
            pk__gte=min(first, users),
            status="active",
            disabled_at__isnull=True,
            devices__is_active=True,
            devices__form_factor="phone",
        )
        .order_by("pk")
        .first()
    )
    if user is None:
        raise SystemExit("the fixture has no busy user with an active phone: use more --users")
    replaced = Device.objects.filter(
        user=user, inactive_reason="REPLACED_BY_NEWER_DEVICE", access_token_digest__isnull=False
    ).first()
    return Objects(
        user=user,
        phone=Device.objects.get(user=user, is_active=True),
        replaced_phone=replaced,
        key=ApiKey.objects.filter(rotated_from__isnull=False).order_by("pk").first(),
        app=App.objects.order_by("pk").first(),
        code=AuthCode.objects.filter(user=user, status="redeemed").order_by("-pk").first(),
        deletion=DeletionRequest.objects.filter(status="pending").order_by("pk").last(),
        event=AuditEvent.objects.filter(user_ref=user.user_id).order_by("-pk").first(),
    )


def build_pages(fixture: Fixture, objects: Objects) -> list[Page]:
    from django.urls import reverse

    from accounts.models import ActorType, AuditAction, AuthCodeStatus, DeletionStatus, UserStatus
    from accounts.selectors import KeyStatus
    from devices.models import FormFactor, InactiveReason, Platform

    rows = fixture.rows
    pages = [
        Page("dashboard (admin index)", reverse("admin:index")),
        Page("app index: accounts", reverse("admin:app_list", args=["accounts"])),
        Page("app index: devices", reverse("admin:app_list", args=["devices"])),
    ]

    def changelist(
        label: str, name: str, searches: dict[str, str], filters: dict[str, list[str]]
    ) -> None:
        url = reverse(f"admin:{name}_changelist")
        pages.append(Page(f"{label}: list", url))
        for what, term in searches.items():
            pages.append(Page(f"{label}: search {what}", f"{url}?{urlencode({'q': term})}"))
        for parameter, values in filters.items():
            for value in values:
                query = urlencode({parameter: value})
                pages.append(Page(f"{label}: filter {parameter}={value}", f"{url}?{query}"))
        for number in (2, 20):
            pages.append(
                Page(
                    f"{label}: page {number}",
                    f"{url}?p={number}",
                    available=rows[name] > (number - 1) * PER_PAGE,
                )
            )

    user, phone, key, app = objects.user, objects.phone, objects.key, objects.app
    changelist(
        "apps",
        "accounts_app",
        {"app id (exact)": app.app_id, "name (part)": "app 1"},
        {},
    )
    changelist(
        "keys",
        "accounts_apikey",
        {"key id (exact)": key.key_id, "key id (prefix)": key.key_id[:3]},
        {"status": [s.value for s in KeyStatus], "app__id__exact": [str(app.pk)]},
    )
    changelist(
        "users",
        "accounts_linkeduser",
        {
            "user id (exact)": user.user_id,
            "external id (exact)": user.external_id,
            "external id (broad prefix)": "customer-1",
            "external id (narrow prefix)": user.external_id[:-14],
            "no match": "nobody@example.com",
        },
        {
            "app__id__exact": [str(app.pk)],
            "status__exact": UserStatus.values,
            "disabled": ["yes", "no"],
            "active_device": ["yes", "no"],
        },
    )
    changelist(
        "codes",
        "accounts_authcode",
        {"user id (exact)": user.user_id, "no match": "0" * 24},
        {"status__exact": AuthCodeStatus.values},
    )
    changelist(
        "deletions",
        "accounts_deletionrequest",
        {
            "request id (exact)": objects.deletion.request_id,
            "deleted user id (exact)": objects.deletion.deleted_user_id,
        },
        {"status__exact": DeletionStatus.values},
    )
    changelist(
        "audit",
        "accounts_auditevent",
        {
            "user id (timeline)": user.user_id,
            "install id (target)": phone.install_id,
            "key id (target)": key.key_id,
        },
        {"action__exact": AuditAction.values, "actor_type__exact": ActorType.values},
    )
    changelist(
        "devices",
        "devices_device",
        {
            "install id (exact)": phone.install_id,
            "install id (prefix)": phone.install_id[:7],
            "model (prefix)": "iPad",
            "no match": "nothing-like-this",
        },
        {
            "platform__exact": Platform.values,
            "form_factor__exact": FormFactor.values,
            "is_active__exact": ["1", "0"],
            "inactive_reason__exact": InactiveReason.values,
        },
    )

    def change(label: str, obj: Any) -> None:
        opts = obj._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        pages.append(Page(f"{label}: change page", url))

    change("user (4 devices, 27 codes, 61 events)", user)
    pages.append(
        Page(
            "user: history",
            reverse("admin:accounts_linkeduser_history", args=[user.pk]),
        )
    )
    change("device (active phone)", phone)
    change("device (replaced phone)", objects.replaced_phone)
    change("key (rotated)", key)
    change("app", app)
    change("code (redeemed)", objects.code)
    change("deletion (pending)", objects.deletion)
    change("audit event", objects.event)
    pages.append(Page("keys: add form", reverse("admin:accounts_apikey_add"), roles=("root",)))

    def action(label: str, obj: Any, name: str, roles: tuple[str, ...] = ROLES) -> None:
        opts = obj._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_staff_action", args=[name])
        pages.append(Page(f"action: {label}", f"{url}?ids={obj.pk}", roles=roles))

    action("deactivate device", phone, "deactivate")
    # Support may not make a device active (devices.activate_device): the superuser only.
    action("make device active", objects.replaced_phone, "activate", roles=("root",))
    action("disable user", user, "disable")
    return pages


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Measure:
    status: int
    ms: float
    queries: int
    slowest_ms: float
    slowest_sql: str


def measure(client: Any, url: str, runs: int) -> Measure:
    """One warm-up request, then `runs` timed ones; the median time, the most queries of a
    run, and the slowest query of the median run."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)
    samples = []
    statuses = set()
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            seconds = time.perf_counter() - started
        statuses.add(response.status_code)
        slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default=None)
        samples.append((seconds, len(captured), slowest))
    samples.sort(key=lambda s: s[0])
    seconds, _, slowest = samples[len(samples) // 2]
    return Measure(
        status=max(statuses, key=lambda s: s != 200),
        ms=statistics.median(s[0] for s in samples) * 1000,
        queries=max(s[1] for s in samples),
        slowest_ms=float(slowest["time"]) * 1000 if slowest else 0.0,
        slowest_sql=slowest["sql"] if slowest else "",
    )


def staff_clients() -> dict[str, Any]:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from accounts.roles import SUPPORT, setup_roles

    setup_roles()
    root = User.objects.create_superuser("bench-root", "root@bench.test", None)
    support = User.objects.create_user("bench-support", "support@bench.test", None, is_staff=True)
    support.groups.set([Group.objects.get(name=SUPPORT)])
    clients = {}
    for role, user in (("root", root), ("support", support)):
        clients[role] = Client(SERVER_NAME="localhost")
        clients[role].force_login(user)
    return clients


@dataclass
class Side:
    """One fixture in its own database: its pages (by name) and logged-in staff clients."""

    label: str
    database: str
    fixture: Fixture
    pages: dict[str, Page]
    clients: dict[str, Any]
    results: dict[tuple[str, str], Measure] = field(default_factory=dict)


def prepare(label: str, database: str, users: int) -> Side:
    from django.core.management import call_command

    use_database(database)
    call_command("migrate", verbosity=0)
    clients = staff_clients()
    started = time.perf_counter()
    fixture = load_fixture(users)
    print_fixture(label, fixture)
    sizes = ", ".join(f"{table} {size}" for table, size in table_sizes().items())
    print(f"  loaded in {time.perf_counter() - started:.1f} s; on disk: {sizes}")
    pages = {page.name: page for page in build_pages(fixture, typical_objects(users))}
    return Side(label, database, fixture, pages, clients)


def measure_pages(sides: list[Side], runs: int) -> None:
    """Page by page and role by role, on each fixture in turn: the measurements compared
    are next to each other in time, whatever else the machine is doing meanwhile."""
    for name in sides[0].pages:
        for side in sides:
            page = side.pages[name]
            if not page.available:
                continue
            use_database(side.database)
            for role in page.roles:
                side.results[(name, role)] = measure(side.clients[role], page.url, runs)


def explain(sql: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of a captured read, in a transaction rolled back."""
    from django.db import connection, transaction

    if not sql.lstrip().upper().startswith("SELECT"):
        return ["(not a SELECT: not explained)"]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        plan = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return plan


# --------------------------------------------------------------------------- report


def cell(values: list[str]) -> str:
    return " / ".join(values)


TABLE_HEADER = (
    "page",
    "status",
    "big ms root / supp",
    "small ms root / supp",
    "ratio",
    "queries",
    "slowest query ms",
)


def table_rows(
    pages: list[Page],
    big: dict[tuple[str, str], Measure],
    small: dict[tuple[str, str], Measure],
) -> list[tuple[str, ...]]:
    """One row per page measured on the big fixture; "-" for a role the page is not for,
    "n/a" where the small fixture has too few rows for the page (a page number)."""
    rows = []
    for page in pages:
        if not any((page.name, role) in big for role in ROLES):
            continue
        statuses, big_ms, small_ms, queries, slowest = [], [], [], [], []
        big_sum = small_sum = 0.0
        for role in ROLES:
            b, s = big.get((page.name, role)), small.get((page.name, role))
            if b is None:
                statuses.append("-")
                big_ms.append("-")
                small_ms.append("-")
                queries.append("-")
                continue
            statuses.append(str(b.status))
            big_ms.append(f"{b.ms:.0f}")
            small_ms.append(f"{s.ms:.0f}" if s else "n/a")
            queries.append(str(b.queries))
            slowest.append(b.slowest_ms)
            if s:
                big_sum, small_sum = big_sum + b.ms, small_sum + s.ms
        rows.append(
            (
                page.name,
                cell(statuses),
                cell(big_ms),
                cell(small_ms),
                f"{big_sum / small_sum:.1f}x" if small_sum else "-",
                cell(queries),
                f"{max(slowest):.0f}",
            )
        )
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [TABLE_HEADER, *rows]) for i in range(len(TABLE_HEADER))]

    def line(row: tuple[str, ...]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True))])

    print(line(TABLE_HEADER))
    print("-" * len(line(TABLE_HEADER)))
    for row in rows:
        print(line(row))


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    lines = [
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "|".join(["---", *["---:"] * (len(TABLE_HEADER) - 1)]) + "|",
    ]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def print_fixture(label: str, fixture: Fixture) -> None:
    print(f"\n{label} fixture ({fixture.users} users):")
    for table, rows in fixture.rows.items():
        print(f"  {table:<28}{rows:>10} rows  {fixture.seconds[table]:>6.1f} s")
    print(f"  {'VACUUM ANALYZE':<28}{'':>10}       {fixture.seconds['VACUUM ANALYZE']:>6.1f} s")


def failures(
    pages: list[Page],
    big: dict[tuple[str, str], Measure],
    small: dict[tuple[str, str], Measure],
) -> list[str]:
    found = []
    for page in pages:
        for role in page.roles:
            b, s = big.get((page.name, role)), small.get((page.name, role))
            if b is not None and b.status != 200:
                found.append(f"{page.name} ({role}): answered {b.status} on the big fixture")
            if b is not None and b.ms > TARGET_MS:
                found.append(f"{page.name} ({role}): {b.ms:.0f} ms > {TARGET_MS:.0f} ms")
            if s is not None and s.status != 200:
                found.append(f"{page.name} ({role}): answered {s.status} on the small fixture")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--small-users", type=int, default=1_000, help="the baseline fixture")
    parser.add_argument("--runs", type=int, default=5, help="timed requests per page")
    parser.add_argument(
        "--explain-ms",
        type=float,
        default=50.0,
        help="print the plan of a page's slowest query when it takes at least this long",
    )
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = parser.parse_args()
    if min(args.users, args.small_users) < BUSY_EVERY:
        parser.error(f"--users and --small-users must be at least {BUSY_EVERY}")

    configure(args.database_url)
    recreate_databases(args.database_url)
    try:
        return run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_databases(args.database_url)


def run(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.db import connection

    started = time.perf_counter()
    big_name, small_name = database_names(args.database_url)
    small_side = prepare("small", small_name, args.small_users)
    big_side = prepare("big", big_name, args.users)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        server = cursor.fetchone()[0].split(" on ")[0]
        cursor.execute("SHOW shared_buffers")
        buffers = cursor.fetchone()[0]
    print(
        f"\nmachine: {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{sys.version.split()[0]}; {server}, shared_buffers {buffers}"
    )
    measuring = time.perf_counter()
    measure_pages([big_side, small_side], args.runs)
    renderings = (len(big_side.results) + len(small_side.results)) * (args.runs + 1)
    print(f"{renderings} renderings in {time.perf_counter() - measuring:.0f} s")
    use_database(big_name)
    pages, big, small = list(big_side.pages.values()), big_side.results, small_side.results
    big_fixture = big_side.fixture

    print(
        f"\nserver time: median of {args.runs} requests after a warm-up, through "
        "django.test.Client in this process; root = superuser, supp = Support role; ratio = "
        "big / small (the two roles' times added); queries and slowest query on the big fixture\n"
    )
    rows = table_rows(pages, big, small)
    print_table(rows)
    missing = [page.name for page in pages if not page.available]
    if missing:
        print(f"\nnot measured, the list has too few rows for the page: {', '.join(missing)}")
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(rows))
        print(f"markdown table written to {args.markdown}")

    slow = sorted(
        ((m, name, role) for (name, role), m in big.items() if m.slowest_ms >= args.explain_ms),
        key=lambda item: -item[0].slowest_ms,
    )
    explained = set()
    for m, name, role in slow[:MAX_PLANS]:
        if name in explained:
            continue
        explained.add(name)
        print(f"\nslowest query of {name} ({role}), {m.slowest_ms:.0f} ms:\n  {m.slowest_sql}")
        for line in explain(m.slowest_sql):
            print(f"  {line}")

    top = sorted(big.items(), key=lambda item: -item[1].ms)[:5]
    print("\nslowest pages (big fixture):")
    for (name, role), m in top:
        print(f"  {m.ms:6.0f} ms  {name} ({role}), {m.queries} queries")
    found = failures(pages, big, small)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    if found:
        print(f"\n{len(found)} page(s) missed the target (200, <= {TARGET_MS:.0f} ms):")
        for line in found:
            print(f"  {line}")
        return 1
    print(f"\nevery page answered 200 within {TARGET_MS:.0f} ms on {big_fixture.users} users")
    return 0


if __name__ == "__main__":
    sys.exit(main())
