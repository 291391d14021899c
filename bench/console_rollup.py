"""Benchmark: do the console's daily activity roll-up and its indexes slow issuance or
redemption? Side by side in one run, on PostgreSQL.

    .venv/bin/python bench/console_rollup.py [--calls 500] [--rounds 6] [--history 200000]

Drops and recreates a dedicated database (default `portal_bench_rollup`), migrates it and
loads a history (codes and audit events of --history users, by generate_series). Then, in
rounds that alternate between the two modes, the same process issues --calls codes
(`services.issue_auth_code`) and redeems each of them on a new device
(`devices.services.redeem_auth_code`), timing every call:

- without: the indexes as before this change (the audit table's plain index on app_id, the
  devices' `device_active_kind`) instead of the console's (app, …) ones, and no roll-up;
- with: the console's indexes, and `services.roll_up_activity` running in a second process
  every second (production runs it once a minute, with the code sweep).

Alternating the modes round by round compares measurements next to each other in time on a
machine shared with others. The bound: p50 with / p50 without <= 1.05 for each operation.
Exits 1 when a ratio exceeds it.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import benchdb  # beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal_bench_rollup"
BOUND = 1.05
ROLL_UP_EVERY = 1.0

NOT_DEVICES = "WHERE NOT (actor_type = 'device')"
CONSOLE_INDEXES = {
    "audit_app_recent": "accounts_auditevent (app_id, occurred_at DESC, id DESC)",
    "audit_app_action": f"accounts_auditevent (app_id, action, occurred_at DESC, id DESC) "
    f"{NOT_DEVICES}",
    "audit_app_actor": f"accounts_auditevent (app_id, actor, occurred_at DESC, id DESC) "
    f"{NOT_DEVICES}",
    "device_app_active_kind": "devices_device (app_id, platform, form_factor) WHERE is_active",
}
FORMER_INDEXES = {
    "accounts_auditevent_app_id_d5bb3c30": "accounts_auditevent (app_id)",
    "device_active_kind": "devices_device (platform, form_factor) WHERE is_active",
}

LOAD = [
    """
    INSERT INTO accounts_linkeduser (user_id, app_id, external_id, status, created_at)
    SELECT substr(md5('old-' || g), 1, 24), %(app)s, 'old-' || g, 'active',
           now() - interval '20 days'
    FROM generate_series(1, %(history)s) AS g
    """,
    """
    INSERT INTO accounts_authcode (code_digest, app_id, user_id, api_key_id, status, created_at,
                                   expires_at, redeemed_at, redeemed_install_id)
    SELECT md5('c' || u.id) || md5('d' || u.id), %(app)s, u.id, NULL, 'redeemed',
           now() - interval '6 days' * random(), now(), now(), ''
    FROM accounts_linkeduser u WHERE u.app_id = %(app)s
    """,
    """
    INSERT INTO accounts_auditevent (occurred_at, app_id, actor_type, actor, action, target_type,
                                     target_id, user_ref, details)
    SELECT now() - interval '20 days' * random(), %(app)s, 'device', 'i' || g,
           (ARRAY['user.created', 'user.restored', 'device.activated'])[1 + g %% 3], 'user',
           'x' || g, 'x' || g, '{}'::jsonb
    FROM generate_series(1, 3 * %(history)s) AS g
    """,
]


def configure(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["SECRET_KEY"] = "bench-console-rollup-not-a-secret-" + "x" * 32
    os.environ["DEBUG"] = "false"
    os.environ["REDIS_URL"] = ""
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["PORTAL_PROCESS"] = "batch"  # loading a million rows takes more than 5 s
    os.environ["DATABASE_BATCH_STATEMENT_TIMEOUT"] = "0"


def set_mode(with_console: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if with_console:
            for name, target in CONSOLE_INDEXES.items():
                cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
            for name in FORMER_INDEXES:
                cursor.execute(f"DROP INDEX IF EXISTS {name}")
        else:
            for name in CONSOLE_INDEXES:
                cursor.execute(f"DROP INDEX IF EXISTS {name}")
            for name, target in FORMER_INDEXES.items():
                cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
        cursor.execute("VACUUM ANALYZE accounts_auditevent")
        cursor.execute("VACUUM ANALYZE devices_device")
        cursor.execute("CHECKPOINT")


class RollUpProcess:
    """`services.roll_up_activity` every ROLL_UP_EVERY seconds in a process of its own, as the
    Celery worker runs it beside the web processes (a thread here would share the timed
    calls' interpreter lock, which production never does)."""

    def __init__(self, database_url: str) -> None:
        self.child = subprocess.Popen(  # noqa: S603 (this script, by its own path)
            [sys.executable, __file__, "--roll-up-child", "--database-url", database_url],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.child.stdout is not None
        assert self.child.stdout.readline().strip() == "ready"

    def stop(self) -> int:
        self.child.send_signal(signal.SIGTERM)
        out, _ = self.child.communicate(timeout=30)
        return int(out.split()[-1]) if out.split() else 0


def roll_up_child() -> None:
    from accounts import services

    runs = 0

    def finish(*_: object) -> None:
        print(runs, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, finish)
    print("ready", flush=True)
    while True:
        time.sleep(ROLL_UP_EVERY)
        services.roll_up_activity()
        runs += 1


def one_round(api_key, app_id: str, calls: int, tag: str) -> tuple[list[float], list[float]]:
    from accounts import services
    from devices.services import DeviceInfo, redeem_auth_code

    issued, redeemed = [], []
    for i in range(calls):
        started = time.perf_counter()
        code = services.issue_auth_code(api_key=api_key, external_id=f"{tag}-{i}")
        issued.append(time.perf_counter() - started)
        device = DeviceInfo(install_id=f"{tag}-{i}-phone", platform="android", form_factor="phone")
        started = time.perf_counter()
        redeem_auth_code(code=code.code, app_id=app_id, device=device)
        redeemed.append(time.perf_counter() - started)
    return issued, redeemed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--history", type=int, default=200_000)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--roll-up-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.roll_up_child:
        configure(args.database_url)
        import django

        django.setup()
        roll_up_child()
    name = benchdb.database_name(args.database_url)
    benchdb.drop(args.database_url, [name], create=True)
    configure(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    from accounts import services
    from accounts.audit import Actor

    try:
        call_command("migrate", verbosity=0)
        app = services.create_app(name="Bench")
        key = services.create_api_key(
            app=app, name="bench", scopes=["user.link"], actor=Actor.operator("bench")
        ).api_key
        with connection.cursor() as cursor:
            for sql in LOAD:
                cursor.execute(sql, {"app": app.pk, "history": args.history})
        services.roll_up_activity()
        times: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
        one_round(key, app.app_id, 50, "warm-up")
        roll_ups = 0
        for round_no in range(args.rounds):
            for with_console in (round_no % 2 == 0, round_no % 2 == 1):
                set_mode(with_console)
                child = RollUpProcess(args.database_url) if with_console else None
                tag = f"r{round_no}-{'with' if with_console else 'without'}"
                issued, redeemed = one_round(key, app.app_id, args.calls, tag)
                if child:
                    roll_ups += child.stop()
                times[with_console][0].extend(issued)
                times[with_console][1].extend(redeemed)
        print(
            f"{args.rounds} rounds x {args.calls} calls per mode, history {args.history} users "
            f"and {3 * args.history} audit events; roll-ups run meanwhile: {roll_ups}\n"
        )
        print("| operation | p50 without (ms) | p50 with (ms) | ratio |\n|---|---|---|---|")
        worst = 0.0
        for index, operation in enumerate(("issuance", "redemption")):
            without = statistics.median(times[False][index]) * 1000
            with_ = statistics.median(times[True][index]) * 1000
            worst = max(worst, with_ / without)
            print(f"| {operation} | {without:.3f} | {with_:.3f} | {with_ / without:.3f} |")
        print(f"\nverdict: {'ok' if worst <= BOUND else 'FAIL'} (bound {BOUND})")
        return 0 if worst <= BOUND else 1
    finally:
        connections.close_all()
        benchdb.drop(args.database_url, [name])


if __name__ == "__main__":
    sys.exit(main())
