"""Benchmark: the authentication-code sweep on one million expired codes, on PostgreSQL.

    .venv/bin/python bench/sweep.py [--codes 1000000] [--requests 2000] [--rounds 2] [--keep]

Drops and recreates a dedicated database (default `portal_bench`), migrates it, creates an
app, a key and users, and loads the codes with one INSERT … SELECT … FROM generate_series
(then VACUUM ANALYZE and CHECKPOINT). Then it measures:

1. the full sweep, `accounts.services.sweep_auth_codes()`, in this process: wall time, peak
   memory growth (tracemalloc peak and RSS high-water mark), the counts, the time and WAL
   of the batch statements; before that, EXPLAIN (ANALYZE, BUFFERS, WAL) of the first
   batch of each kind, the exact SQL the service sends, in a transaction rolled back;
2. issuance latency, POST /users/auth-code through Django's test Client in this process
   (the whole middleware/DRF/ORM stack, no socket), in rounds on a freshly loaded million:
   first without the sweep, then while the sweep runs in a second process on the same
   database. Only the requests that started and ended while the sweep ran count.

Exits 1 when a target is missed: the million swept in <= 60 s, memory growth <= 100 MB,
issuance p99 during the sweep <= 2x the p99 without it (or when the counts are wrong).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import json
import math
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchdb  # beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal_bench"
TARGET_SWEEP_SECONDS = 60.0
TARGET_MEMORY_MB = 100.0
TARGET_P99_RATIO = 2.0

USERS = 10_000
PURGE_SHARE = 0.8  # expired longer ago than the retention period: deleted
WARM_UP_REQUESTS = 100
MIN_DURING_SAMPLES = 200  # fewer and a p99 says nothing; --codes is too small to tell
MAX_DURING_FACTOR = 20  # a bound on the requests sent during one sweep
QUIET_BUSY_CORES = 1.3  # the bench alone keeps about one core busy without the sweep


def configure(database_url: str, batch_size: int | None) -> None:
    """The environment the settings read; set before Django is imported."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["DEBUG"] = "false"  # DEBUG keeps every query in memory
    os.environ["REDIS_URL"] = ""  # local-memory cache for the throttle counter
    os.environ["THROTTLE_API_KEY_RATE"] = "100000000/min"
    os.environ["LOG_LEVEL"] = "WARNING"
    if batch_size is not None:
        os.environ["AUTH_CODE_SWEEP_BATCH_SIZE"] = str(batch_size)


def recreate_database(database_url: str) -> None:
    benchdb.drop(database_url, [benchdb.database_name(database_url)], create=True)


def drop_database(database_url: str) -> None:
    benchdb.drop(database_url, [benchdb.database_name(database_url)])


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Fixture:
    app_pk: int
    key_pk: int
    authorization: str


LOAD_USERS = """
    INSERT INTO accounts_linkeduser (user_id, app_id, external_id, status, created_at)
    SELECT substr(md5('bench-user-' || g), 1, 24), %(app)s, 'bench-user-' || g, 'active', %(now)s
    FROM generate_series(1, %(users)s) AS g
"""

# Codes in insertion order = expiry order, as in production. The oldest PURGE_SHARE expired
# over four retention periods before `now - retention - 1 h` (deleted by the sweep); the rest
# expired between `now - retention + 1 h` and `now - 1 min` (kept; the issued ones marked
# expired). The hour of margin keeps the counts exact however late the sweep starts. Every
# other code was redeemed, the others never were.
LOAD_CODES = """
    WITH users AS (
        SELECT array_agg(id ORDER BY id) AS ids FROM accounts_linkeduser WHERE app_id = %(app)s
    )
    INSERT INTO accounts_authcode (
        code_digest, app_id, user_id, api_key_id, status, created_at, expires_at,
        redeemed_at, redeemed_install_id
    )
    SELECT
        encode(sha256(convert_to('bench-code-' || g, 'UTF8')), 'hex'),
        %(app)s,
        users.ids[1 + mod(g, cardinality(users.ids))],
        %(key)s,
        CASE WHEN mod(g, 2) = 0 THEN 'redeemed' ELSE 'issued' END,
        t.expires_at - %(ttl)s,
        t.expires_at,
        CASE WHEN mod(g, 2) = 0 THEN t.expires_at - %(ttl)s / 2 END,
        CASE WHEN mod(g, 2) = 0 THEN 'install-' || mod(g, cardinality(users.ids)) ELSE '' END
    FROM users, generate_series(1, %(codes)s) AS g,
    LATERAL (
        SELECT CASE
            WHEN g <= %(purge)s THEN %(purge_newest)s - (%(purge)s - g) * %(purge_step)s
            ELSE %(keep_newest)s - (%(codes)s - g) * %(keep_step)s
        END AS expires_at
    ) AS t
"""


def create_fixture() -> Fixture:
    from accounts import services
    from accounts.audit import Actor

    app = services.create_app(name="Bench", contact_emails=["ops@bench.test"])
    new_key = services.create_api_key(
        app=app, name="bench", scopes=["user.link"], actor=Actor.system("bench")
    )
    services.issue_auth_code(api_key=new_key.api_key, external_id="bench-user-0")
    return Fixture(
        app_pk=app.pk, key_pk=new_key.api_key.pk, authorization=f"Bearer {new_key.full_key}"
    )


@dataclass(frozen=True)
class Loaded:
    codes: int
    expect_purged: int
    expect_expired: int
    seconds: float


def load_codes(fixture: Fixture, codes: int) -> Loaded:
    """Replaces every code with `codes` expired ones: one statement, then VACUUM ANALYZE (the
    visibility map and statistics a table that has lived for a while has) and a CHECKPOINT,
    so that no write-back of the load runs into the measurements and each starts alike."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    retention: dt.timedelta = settings.AUTH_CODE_RETENTION
    purge = round(codes * PURGE_SHARE)
    keep = codes - purge
    margin = dt.timedelta(hours=1)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE accounts_authcode")
        cursor.execute(
            LOAD_CODES,
            {
                "app": fixture.app_pk,
                "key": fixture.key_pk,
                "codes": codes,
                "purge": purge,
                "ttl": dt.timedelta(seconds=settings.AUTH_CODE_TTL_SECONDS),
                "purge_newest": now - retention - margin,
                "purge_step": 4 * retention / max(purge, 1),
                "keep_newest": now - dt.timedelta(minutes=1),
                "keep_step": (retention - 2 * margin) / max(keep, 1),
            },
        )
        cursor.execute("VACUUM (ANALYZE) accounts_authcode")
        cursor.execute("CHECKPOINT")
    # Issued (odd g) among the kept codes g = purge + 1 … codes.
    expect_expired = (codes + 1) // 2 - (purge + 1) // 2
    return Loaded(codes, purge, expect_expired, time.perf_counter() - started)


# --------------------------------------------------------------------------- the sweep


def wal_position() -> int:
    """The server's WAL insert position in bytes, read on the raw connection so that no
    execute wrapper sees it. Server-wide: it counts every database's writes."""
    from django.db import connection

    row = connection.connection.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint"
    ).fetchone()
    return int(row[0])


@dataclass
class StatementLog:
    """A connection execute wrapper timing every statement the sweep sends, and noting the
    wall-clock time and WAL position where each kind of batch starts (call `finish` at the
    end)."""

    entries: list[tuple[str, float, int]] = field(default_factory=list)
    marks: list[tuple[str, float, int]] = field(default_factory=list)

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        kind = sql.split(None, 1)[0].upper()
        if not self.marks or self.marks[-1][0] != kind:
            self.marks.append((kind, time.time(), wal_position()))
        started = time.perf_counter()
        result = execute(sql, params, many, context)
        elapsed = time.perf_counter() - started
        self.entries.append((kind, elapsed, context["cursor"].rowcount))
        return result

    def finish(self) -> None:
        self.marks.append(("END", time.time(), wal_position()))

    def summary(self) -> dict[str, dict[str, float]]:
        wal: dict[str, int] = {}
        phase: dict[str, tuple[float, float]] = {}
        for (kind, since, start), (_, until, end) in itertools.pairwise(self.marks):
            wal[kind] = wal.get(kind, 0) + end - start
            phase.setdefault(kind, (since, until))
        kinds: dict[str, dict[str, float]] = {}
        for kind in ("DELETE", "UPDATE"):
            times = [t for k, t, _ in self.entries if k == kind]
            rows = [r for k, _, r in self.entries if k == kind]
            if not times:
                continue
            kinds[kind] = {
                "statements": len(times),
                "rows": sum(rows),
                "total_s": sum(times),
                "first_ms": times[0] * 1000,
                "median_ms": statistics.median(times) * 1000,
                "max_ms": max(times) * 1000,
                "last_full_ms": next(
                    (t * 1000 for t, r in zip(reversed(times), reversed(rows), strict=True) if r),
                    0.0,
                ),
                "wal_mb": wal.get(kind, 0) / 2**20,
                "since": phase.get(kind, (0.0, 0.0))[0],
                "until": phase.get(kind, (0.0, 0.0))[1],
            }
        return kinds


class _RollBack(Exception):
    pass


@dataclass
class Explainer:
    """Sends the sweep's first DELETE and first UPDATE as EXPLAIN (ANALYZE, BUFFERS, WAL) of the
    same statement with the same parameters. The sweep then sees a short batch (the plan's
    line count) and moves on, so one batch of each kind runs; the caller rolls it back."""

    plans: dict[str, list[str]] = field(default_factory=dict)
    statements: dict[str, str] = field(default_factory=dict)

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        from django.db import connection

        kind = sql.split(None, 1)[0].upper()
        if kind not in ("DELETE", "UPDATE") or kind in self.plans:
            return execute(sql, params, many, context)
        cursor = context["cursor"]
        self.statements[kind] = connection.ops.compose_sql(sql, params)
        execute(f"EXPLAIN (ANALYZE, BUFFERS, WAL) {sql}", params, many, context)
        self.plans[kind] = [row[0] for row in cursor.fetchall()]
        return None


def explain_batches() -> Explainer:
    from django.db import connection, transaction

    from accounts import services

    explainer = Explainer()
    try:
        with transaction.atomic(), connection.execute_wrapper(explainer):
            services.sweep_auth_codes()
            raise _RollBack
    except _RollBack:
        pass
    return explainer


def status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise LookupError(name)


def reset_peak_rss() -> bool:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class SweepRun:
    seconds: float
    expired: int
    purged: int
    traced_peak_mb: float
    rss_growth_mb: float
    rss_method: str
    batches: dict[str, dict[str, float]]


def measure_sweep() -> SweepRun:
    from django.db import connection

    from accounts import services

    log = StatementLog()
    connection.ensure_connection()
    gc.collect()
    resettable = reset_peak_rss()
    rss_before = status_kib("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    with connection.execute_wrapper(log):
        result = services.sweep_auth_codes()
    seconds = time.perf_counter() - started
    log.finish()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if resettable:
        rss_growth_kib, method = status_kib("VmHWM") - rss_before, "VmHWM - VmRSS before"
    else:
        rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before
        method = "ru_maxrss delta"
    return SweepRun(
        seconds=seconds,
        expired=result.expired,
        purged=result.purged,
        traced_peak_mb=traced_peak / 2**20,
        rss_growth_mb=rss_growth_kib / 1024,
        rss_method=method,
        batches=log.summary(),
    )


def leftovers() -> tuple[int, int]:
    """Codes the sweep should have handled and did not: (to purge, to mark expired)."""
    from django.conf import settings
    from django.utils import timezone

    from accounts.models import AuthCode, AuthCodeStatus

    now = timezone.now()
    return (
        AuthCode.objects.filter(expires_at__lte=now - settings.AUTH_CODE_RETENTION).count(),
        AuthCode.objects.filter(status=AuthCodeStatus.ISSUED, expires_at__lte=now).count(),
    )


def sweep_child() -> None:
    """The sweep in its own process (what a Celery worker is), reporting on stdout."""
    import django

    django.setup()
    from django.db import connection

    from accounts import services

    log = StatementLog()
    connection.ensure_connection()
    print(json.dumps({"started": time.time()}), flush=True)
    with connection.execute_wrapper(log):
        result = services.sweep_auth_codes()
    finished = time.time()
    log.finish()
    report = {"finished": finished, "expired": result.expired, "purged": result.purged}
    print(json.dumps({**report, "batches": log.summary()}), flush=True)


# --------------------------------------------------------------------------- issuance


@dataclass(frozen=True)
class Sample:
    started: float  # wall clock, comparable with the sweep process's
    seconds: float

    @property
    def finished(self) -> float:
        return self.started + self.seconds


class Issuer:
    """POST /users/auth-code through the test Client. Before each request it does what the
    WSGI handler does at request start (close_old_connections: connection age and health
    check), which the test Client skips. Even requests restore an existing user, odd ones
    create a new one."""

    def __init__(self, authorization: str) -> None:
        from django.test import Client

        self.client = Client(SERVER_NAME="localhost")
        self.authorization = authorization
        self.sent = 0

    def __call__(self) -> Sample:
        from django.db import close_old_connections

        n = self.sent
        self.sent += 1
        external_id = f"bench-user-{1 + n % USERS}" if n % 2 == 0 else f"bench-new-{n}"
        body = json.dumps({"external_id": external_id})
        started_wall = time.time()
        started = time.perf_counter()
        close_old_connections()
        response = self.client.post(
            "/users/auth-code",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=self.authorization,
        )
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"issuance answered {response.status_code}: {response.content!r}")
        return Sample(started_wall, seconds)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Latency:
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples: list[Sample]) -> Latency:
        ms = [s.seconds * 1000 for s in samples]
        return cls(len(ms), percentile(ms, 50), percentile(ms, 99), max(ms))


def cpu_counters() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How many cores the whole machine kept busy in between: this bench, PostgreSQL and
    anything else running here (which the numbers cannot tell apart)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * (os.cpu_count() or 1) if total else 0.0


@dataclass(frozen=True)
class Round:
    baseline: list[Sample]
    during: list[Sample]
    sent: int
    sweep: dict[str, Any]
    busy_baseline: float
    busy_during: float


def run_round(issue: Issuer, requests: int, child_args: list[str]) -> Round:
    """`requests` codes without the sweep, then codes one after the other for as long as
    the sweep runs in its own process (what a Celery worker is), so that every part of the
    sweep is measured; only the requests that started and finished inside it count."""
    for _ in range(WARM_UP_REQUESTS):
        issue()
    before = cpu_counters()
    baseline = [issue() for _ in range(requests)]
    busy_baseline = busy_cores(before, cpu_counters())
    child = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
        [sys.executable, __file__, "--sweep-child", *child_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        started = json.loads(child.stdout.readline())["started"]
        before = cpu_counters()
        samples: list[Sample] = []
        while child.poll() is None and len(samples) < MAX_DURING_FACTOR * requests:
            samples.append(issue())
        busy_during = busy_cores(before, cpu_counters())
        out, _ = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise SystemExit(f"the sweep process failed with exit code {child.returncode}")
    report = json.loads(out.strip().splitlines()[-1])
    report["seconds"] = report["finished"] - started
    during = [s for s in samples if s.started >= started and s.finished <= report["finished"]]
    return Round(baseline, during, len(samples), report, busy_baseline, busy_during)


# --------------------------------------------------------------------------- report


def server_facts() -> dict[str, str]:
    from django.db import connection

    names = (
        "shared_buffers",
        "work_mem",
        "max_wal_size",
        "synchronous_commit",
        "autovacuum",
    )
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        facts = {"server_version": cursor.fetchone()[0]}
        for name in names:
            cursor.execute(f"SHOW {name}")
            facts[name] = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('accounts_authcode'))")
        facts["authcode table + indexes"] = cursor.fetchone()[0]
    return facts


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_batches(title: str, batches: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(
        f"  {'kind':<7}{'stmts':>7}{'rows':>10}{'total s':>9}"
        f"{'first ms':>10}{'median ms':>11}{'last ms':>9}{'max ms':>9}{'WAL MB':>9}"
    )
    for kind, b in batches.items():
        print(
            f"  {kind:<7}{b['statements']:>7.0f}{b['rows']:>10.0f}{b['total_s']:>9.2f}"
            f"{b['first_ms']:>10.1f}{b['median_ms']:>11.1f}{b['last_full_ms']:>9.1f}"
            f"{b['max_ms']:>9.1f}{b['wal_mb']:>9.0f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument(
        "--requests",
        type=int,
        default=2000,
        help="issuance requests without the sweep, over all rounds (during it: as many as fit)",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--batch-size", type=int, help="sets AUTH_CODE_SWEEP_BATCH_SIZE (default: settings)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="issuance rounds, each on a fresh million"
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--sweep-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    configure(args.database_url, args.batch_size)
    if args.sweep_child:
        sweep_child()
        return 0

    child_args = ["--database-url", args.database_url]
    if args.batch_size is not None:
        child_args += ["--batch-size", str(args.batch_size)]

    recreate_database(args.database_url)
    try:
        return run(args, child_args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(args.database_url)


def run(args: argparse.Namespace, child_args: list[str]) -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    fixture = create_fixture()
    with connection.cursor() as cursor:
        cursor.execute(
            LOAD_USERS, {"app": fixture.app_pk, "users": USERS, "now": dt.datetime.now(dt.UTC)}
        )
        cursor.execute("ANALYZE accounts_linkeduser")

    print(
        f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {sys.version.split()[0]}"
    )
    print(
        f"sweep settings: AUTH_CODE_SWEEP_BATCH_SIZE={settings.AUTH_CODE_SWEEP_BATCH_SIZE}, "
        f"AUTH_CODE_RETENTION={settings.AUTH_CODE_RETENTION}"
    )

    # 1. The full sweep, in this process.
    loaded = load_codes(fixture, args.codes)
    for name, value in server_facts().items():
        print(f"postgres {name}: {value}")
    print(
        f"loaded {loaded.codes} codes in {loaded.seconds:.1f} s "
        f"({loaded.expect_purged} to purge, {loaded.expect_expired} to mark expired)"
    )
    explained = explain_batches()
    sweep = measure_sweep()
    left = leftovers()
    counts_ok = (sweep.purged, sweep.expired) == (loaded.expect_purged, loaded.expect_expired)
    if not counts_ok or left != (0, 0):
        print(
            f"WRONG COUNTS: purged {sweep.purged} (expected {loaded.expect_purged}), expired "
            f"{sweep.expired} (expected {loaded.expect_expired}), left over {left}"
        )
    print_batches("sweep statements (in this process, idle database):", sweep.batches)

    # 2. Issuance without, then during, the sweep, in rounds on freshly loaded codes: the
    # two measurements of a round are next to each other in time, whatever else the
    # machine is doing.
    issue = Issuer(fixture.authorization)
    per_round = math.ceil(args.requests / args.rounds)
    rounds: list[Round] = []
    child_counts_ok = True
    print(
        f"\nissuance, {args.rounds} round(s): {per_round} requests without the sweep, then "
        "requests for as long as the sweep runs (busy: cores the whole machine kept busy)"
    )
    for number in range(1, args.rounds + 1):
        reloaded = load_codes(fixture, args.codes)
        one = run_round(issue, per_round, child_args)
        rounds.append(one)
        child_counts_ok &= (one.sweep["purged"], one.sweep["expired"]) == (
            reloaded.expect_purged,
            reloaded.expect_expired,
        )
        without, inside = Latency.of(one.baseline), Latency.of(one.during) if one.during else None
        print(
            f"  round {number}: without p50/p99 {without.p50_ms:.2f}/{without.p99_ms:.2f} ms "
            f"(busy {one.busy_baseline:.1f}); during "
            + (f"p50/p99 {inside.p50_ms:.2f}/{inside.p99_ms:.2f} ms" if inside else "-")
            + f" (busy {one.busy_during:.1f}), {len(one.during)} of {one.sent} requests inside "
            f"a sweep of {one.sweep['seconds']:.1f} s; purged {one.sweep['purged']}, "
            f"expired {one.sweep['expired']}"
        )
    print_batches(
        "sweep statements (second process, during issuance, last round):",
        rounds[-1].sweep["batches"],
    )
    baseline = Latency.of([s for one in rounds for s in one.baseline])
    inside = [s for one in rounds for s in one.during]
    during = Latency.of(inside) if inside else None
    for kind, label in (("DELETE", "purge"), ("UPDATE", "mark-expired")):
        phase = [
            s
            for one in rounds
            if kind in one.sweep["batches"]
            for s in one.during
            if one.sweep["batches"][kind]["since"] <= s.started
            and s.finished <= one.sweep["batches"][kind]["until"]
        ]
        if phase:
            part = Latency.of(phase)
            print(
                f"  during the {label} batches: p50/p99 {part.p50_ms:.2f}/{part.p99_ms:.2f} ms "
                f"({part.requests} requests)"
            )
    busy = [one.busy_baseline for one in rounds if one.busy_baseline > QUIET_BUSY_CORES]
    if busy:
        print(
            f"  WARNING: other work kept the machine busy during {len(busy)} baseline(s) "
            f"(up to {max(busy):.1f} of {os.cpu_count()} cores): the latencies are not comparable"
            " with a quiet machine's; rerun when it is quiet"
        )

    memory_mb = max(sweep.traced_peak_mb, sweep.rss_growth_mb)
    ratio = during.p99_ms / baseline.p99_ms if during else math.inf
    enough = during is not None and during.requests >= min(MIN_DURING_SAMPLES, args.requests)
    checks = {
        "time": sweep.seconds <= TARGET_SWEEP_SECONDS,
        "memory": memory_mb <= TARGET_MEMORY_MB,
        "latency": enough and ratio <= TARGET_P99_RATIO,
        "counts": counts_ok and left == (0, 0) and child_counts_ok,
    }

    print(f"\n{'measure':<44}{'value':>16}  {'target':<12}")
    rows = [
        (f"full sweep of {loaded.codes} codes, wall time", f"{sweep.seconds:.1f} s", "<= 60 s"),
        ("  purged / marked expired", f"{sweep.purged} / {sweep.expired}", ""),
        ("  memory growth, tracemalloc peak", f"{sweep.traced_peak_mb:.2f} MB", "<= 100 MB"),
        (
            f"  memory growth, RSS ({sweep.rss_method})",
            f"{sweep.rss_growth_mb:.2f} MB",
            "<= 100 MB",
        ),
        (
            f"issuance without sweep, p50 / p99 ({baseline.requests} req)",
            f"{baseline.p50_ms:.2f} / {baseline.p99_ms:.2f} ms",
            "",
        ),
    ]
    if during:
        rows.append(
            (
                f"issuance during sweep, p50 / p99 ({during.requests} req)",
                f"{during.p50_ms:.2f} / {during.p99_ms:.2f} ms",
                "",
            )
        )
    rows.append(("p99 during / p99 without", f"{ratio:.2f}x", "<= 2x"))
    for measure, value, target in rows:
        print(f"{measure:<44}{value:>16}  {target:<12}")
    if during:
        print(f"max latency without / during: {baseline.max_ms:.1f} / {during.max_ms:.1f} ms")
    if not enough:
        print(f"too few requests inside the sweep ({len(inside)}): use more --codes")
    print("\nchecks: " + ", ".join(f"{name} {verdict(ok)}" for name, ok in checks.items()))

    for kind in ("DELETE", "UPDATE"):
        print(f"\nEXPLAIN (ANALYZE, BUFFERS, WAL) of the first {kind} batch:")
        print(f"  {explained.statements.get(kind, '(none sent)')}")
        for line in explained.plans.get(kind, []):
            print(f"  {line}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
