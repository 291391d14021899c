"""Throughput of the API under gunicorn, side by side with the stack's floor and a peer.

    .venv/bin/python bench/http.py [--rounds 3] [--duration 10] [--connections 16]
                                   [--users 1000] [--keep]

Needs the `bench` extra (`pip install -e '.[dev,bench]'`: djangorestframework-api-key, the
peer). Drops and recreates a throwaway PostgreSQL database (default `bench_http`; its name
must say `bench`) and flushes a Redis DB of its own (default DB 13), migrates, creates an app,
a key with every scope, one key of the peer, and `--users` users in bulk SQL, each with an
active device, a redeemed code and an audit event. Then it starts the web process exactly as
the Procfile's `web` line does (gunicorn, `portal/gunicorn.py`, DEBUG off) with the bench
settings (`bench/settings.py`: the portal's, plus the views of `bench/views.py` and the
peer's app), and drives each endpoint for `--duration` seconds with a fixed number of
keep-alive connections: wrk when it is on PATH, else a Python generator (threads,
http.client). After a warm-up, `--rounds` rounds, the order of the endpoints rotated in each.

Prints requests/s, p50 and p99 per endpoint, each endpoint's throughput divided by the
floor's of the same round (the key check's also by the peer's), median and min-max over
rounds, and the machine's load; then the CPU one request costs each process group (gunicorn,
the PostgreSQL backends of the bench's database, Redis, the load generator, read from /proc,
so the figures hold on a busy machine too) and the WAL written per request. `--only` runs
some endpoints (and the floor). Exits 1 when a request was not answered 2xx (the run is then
invalid) or when a goal of issue 11 is missed: issuance >= 0.7x the floor, redemption >= 0.4x,
status >= 1.0x, the key check >= 1.0x the peer.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is named like the standard library's `http`: its folder must not be on the import
# path, or `import http.client` (Django, the Python generator) would find this file instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from bench import benchdb  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_http"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
# Counted in Redis as always, but never refused: one client on 127.0.0.1 with one key sends
# far more than the production limits (6000/min per key, 600/min per address) allow.
UNREACHABLE_RATE = "1000000000/min"
# Codes pre-issued per redemption run: more than redemption can use in `--duration` seconds.
MAX_REDEMPTIONS_PER_SECOND = 1500
# Devices whose status is asked in one run: seen within the minute before it (no write).
STATUS_SAMPLE = 20_000
LOAD_BATCH = 100_000
QUIET_BUSY_CORES = 0.3

# name: (what it does, method, path)
ENDPOINTS: dict[str, tuple[str, str, str]] = {
    "floor": (
        "plain Django view, same middleware: SELECT the app by app_id, INSERT one row, JSON",
        "POST",
        "/bench/floor",
    ),
    "issuance": (
        "issue a code; every other request restores a random existing user, the others "
        "create a new one",
        "POST",
        "/users/auth-code",
    ),
    "redemption": (
        "redeem a code pre-issued for a new pending user, on a new install id",
        "POST",
        "/sdk/users",
    ),
    "status": (
        "the status of a random device seen in the last minute (no last_seen_at write)",
        "GET",
        "/sdk/status",
    ),
    "key_check": (
        "DRF view with the customer key check alone: ApiKeyAuthentication, HasScope "
        "(user.read), the per-key rate limiter (counted in Redis), {'ok': true}",
        "GET",
        "/bench/key-check",
    ),
    "peer": (
        "DRF view with djangorestframework-api-key's HasAPIKey only (no authentication "
        "class, no throttle), {'ok': true}",
        "GET",
        "/bench/peer",
    ),
}
# endpoint: (the endpoint it is divided by, the least ratio issue 11 asks for)
GOALS: dict[str, tuple[str, float]] = {
    "issuance": ("floor", 0.7),
    "redemption": ("floor", 0.4),
    "status": ("floor", 1.0),
    "key_check": ("peer", 1.0),
}


# --------------------------------------------------------------------------- data

LOAD_USERS = """
    WITH users AS (
        INSERT INTO accounts_linkeduser (user_id, app_id, external_id, status, created_at)
        SELECT substr(md5('bench-user-' || g), 1, 24), %(app)s, 'bench-user-' || g, 'active',
               %(then)s
        FROM generate_series(%(first)s, %(last)s) AS g
        RETURNING id, user_id, substr(external_id, 12) AS g
    ),
    devices AS (
        INSERT INTO devices_device (
            app_id, user_id, install_id, platform, form_factor, model, os_version,
            app_version, sdk_version, is_active, activated_at, last_seen_at, created_at,
            access_token_digest, access_token_expires_at
        )
        SELECT %(app)s, id, 'bench-install-' || g, 'android', 'phone', 'Pixel 8', '14',
               '3.2.0', '1.4.0', true, %(then)s, %(then)s, %(then)s,
               encode(sha256(convert_to('bench-token-' || g, 'UTF8')), 'hex'),
               %(then)s + interval '30 days'
        FROM users
    ),
    codes AS (
        INSERT INTO accounts_authcode (
            code_digest, app_id, user_id, api_key_id, status, created_at, expires_at,
            redeemed_at, redeemed_install_id
        )
        SELECT encode(sha256(convert_to('bench-old-code-' || g, 'UTF8')), 'hex'), %(app)s, id,
               %(key)s, 'redeemed', %(then)s, %(then)s + interval '10 minutes',
               %(then)s + interval '1 minute', 'bench-install-' || g
        FROM users
    )
    INSERT INTO accounts_auditevent (
        occurred_at, app_id, actor_type, actor, action, target_type, target_id, user_ref,
        details
    )
    SELECT %(then)s, %(app)s, 'device', 'bench-install-' || g, 'user.created', 'user', user_id,
           user_id, jsonb_build_object('issued_by_key', %(key_id)s::text)
    FROM users
"""

# Pending users, one code each: `bench-code-<tag>-<lane>-<n>` for n = 1 … per_lane.
PRE_ISSUE = """
    WITH wanted AS (
        SELECT (g / %(per_lane)s) || '-' || (mod(g, %(per_lane)s) + 1) AS suffix
        FROM generate_series(0, %(count)s - 1) AS g
    ),
    users AS (
        INSERT INTO accounts_linkeduser (user_id, app_id, external_id, status, created_at)
        SELECT substr(md5('bench-redeem-' || %(tag)s || '-' || suffix), 1, 24), %(app)s,
               'bench-redeem-' || %(tag)s || '-' || suffix, 'pending', now()
        FROM wanted
        RETURNING id, substr(external_id, %(cut)s) AS suffix
    )
    INSERT INTO accounts_authcode (
        code_digest, app_id, user_id, api_key_id, status, created_at, expires_at,
        redeemed_install_id
    )
    SELECT encode(sha256(convert_to('bench-code-' || %(tag)s || '-' || suffix, 'UTF8')), 'hex'),
           %(app)s, id, %(key)s, 'issued', now(), now() + %(ttl)s * interval '1 second', ''
    FROM users
"""

TOUCH_DEVICES = """
    UPDATE devices_device SET last_seen_at = now()
    WHERE app_id = %(app)s AND install_id IN (
        SELECT 'bench-install-' || (%(offset)s + %(stride)s * k)
        FROM generate_series(0, %(sample)s - 1) AS k
    )
"""


@dataclass
class Fixture:
    app_pk: int
    app_id: str
    key_pk: int
    key: str
    peer_key: str
    users: int


def configure(database_url: str, redis_url: str) -> None:
    """This process's environment, read by the settings: set before Django is imported."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)
    os.environ["DEBUG"] = "false"
    os.environ["PORTAL_PROCESS"] = "batch"  # the bulk load runs long statements
    os.environ["LOG_LEVEL"] = "WARNING"


def build(users: int) -> Fixture:
    import django
    from django.core.management import call_command

    django.setup()
    from django.db import connection
    from django.utils import timezone
    from rest_framework_api_key.models import APIKey

    from accounts import services
    from accounts.audit import Actor
    from accounts.models import Scope
    from bench.views import FLOOR_TABLE

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(FLOOR_TABLE)
    app = services.create_app(name="HTTP bench", contact_emails=["ops@bench.test"])
    new_key = services.create_api_key(
        app=app, name="bench", scopes=list(Scope.values), actor=Actor.system("bench")
    )
    _, peer_key = APIKey.objects.create_key(name="bench")
    then = timezone.now() - dt.timedelta(days=1)
    started = time.monotonic()
    with connection.cursor() as cursor:
        for first in range(1, users + 1, LOAD_BATCH):
            cursor.execute(
                LOAD_USERS,
                {
                    "app": app.pk,
                    "key": new_key.api_key.pk,
                    "key_id": new_key.api_key.key_id,
                    "then": then,
                    "first": first,
                    "last": min(users, first + LOAD_BATCH - 1),
                },
            )
            if users > LOAD_BATCH:
                print(f"  loaded {min(users, first + LOAD_BATCH - 1):,} users", flush=True)
        cursor.execute("VACUUM (ANALYZE)")
        cursor.execute("CHECKPOINT")
    print(f"data: {users:,} users loaded in {time.monotonic() - started:.1f} s", flush=True)
    return Fixture(
        app_pk=app.pk,
        app_id=app.app_id,
        key_pk=new_key.api_key.pk,
        key=new_key.full_key,
        peer_key=peer_key,
        users=users,
    )


def pre_issue(fixture: Fixture, tag: str, lanes: int, per_lane: int) -> None:
    """Codes for `lanes` x `per_lane` redemptions, each for a new pending user."""
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            PRE_ISSUE,
            {
                "app": fixture.app_pk,
                "key": fixture.key_pk,
                "tag": tag,
                "per_lane": per_lane,
                "count": lanes * per_lane,
                "cut": len(f"bench-redeem-{tag}-") + 1,
                "ttl": settings.AUTH_CODE_TTL_SECONDS,
            },
        )
        cursor.execute("ANALYZE accounts_authcode")


def touch_devices(fixture: Fixture) -> tuple[int, int, int]:
    """Marks a sample of devices, spread over the whole table, seen now; returns the sample
    (offset, stride, size) the status requests pick from."""
    from django.db import connection

    sample = min(fixture.users, STATUS_SAMPLE)
    stride = fixture.users // sample
    offset = random.randint(1, stride)
    with connection.cursor() as cursor:
        cursor.execute(
            TOUCH_DEVICES,
            {"app": fixture.app_pk, "offset": offset, "stride": stride, "sample": sample},
        )
    return offset, stride, sample


# --------------------------------------------------------------------------- the server


class Server:
    """The Procfile's `web` line on a free port, with the bench settings."""

    def __init__(self, work: Path, workers: int | None) -> None:
        from tests.throwaway import free_port

        self.port = free_port()
        self.log_path = work / "web.log"
        self.environ = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DEBUG": "false",
            "PORT": str(self.port),
            "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
            "THROTTLE_API_KEY_RATE": UNREACHABLE_RATE,
            "THROTTLE_SDK_RATE": UNREACHABLE_RATE,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        for name in ("PORTAL_PROCESS", "LOG_LEVEL", "CONN_MAX_AGE"):
            self.environ.pop(name, None)
        if workers:
            self.environ["WEB_CONCURRENCY"] = str(workers)
        self.command = next(
            line.split(":", 1)[1].strip()
            for line in (ROOT / "Procfile").read_text().splitlines()
            if line.startswith("web:")
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (the Procfile's own line)
                ["/bin/sh", "-c", f"exec {self.command}"],
                cwd=ROOT,
                env=self.environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not self.healthy():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"the web process did not start:\n{self.log_path.read_text()}")
            time.sleep(0.2)

    def healthy(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def shape(self) -> str:
        """`workers x threads`, as gunicorn's configuration reads them from this environment."""
        code = "from portal import gunicorn as g; print(g.workers, g.threads)"
        done = subprocess.run(  # noqa: S603 (our interpreter, our module)
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=self.environ,
            capture_output=True,
            text=True,
            check=True,
        )
        workers, threads = done.stdout.split()
        return f"{workers} workers x {threads} threads"

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --------------------------------------------------------------------------- load


@dataclass
class Plan:
    """What one run of one endpoint sends."""

    endpoint: str
    app_id: str
    key: str
    peer_key: str
    users: int
    tag: str = ""  # unique per run: new external ids, codes and install ids
    per_lane: int = 0  # redemption: codes pre-issued per lane
    sample: tuple[int, int, int] = (1, 1, 1)  # status: offset, stride, size

    def request(self, lane: int, n: int, rng: random.Random) -> tuple[str, dict[str, str], str]:
        """Path, headers and body of request `n` (from 1) of lane `lane`; the Python
        generator's twin of the Lua script's `request`."""
        _, _, path = ENDPOINTS[self.endpoint]
        json_type = {"Content-Type": "application/json"}
        if self.endpoint == "floor":
            return path, json_type, json.dumps({"app_id": self.app_id})
        if self.endpoint == "issuance":
            if n % 2:
                external_id = f"bench-new-{self.tag}-{lane}-{n}"
            else:
                external_id = f"bench-user-{rng.randint(1, self.users)}"
            auth = {"Authorization": f"Bearer {self.key}"}
            return path, {**json_type, **auth}, json.dumps({"external_id": external_id})
        if self.endpoint == "redemption":
            suffix = f"{self.tag}-{lane}-{n}"
            body = {
                "authentication_code": f"bench-code-{suffix}",
                "app_id": self.app_id,
                "device": {"install_id": f"bi-{suffix}", "platform": "ios", "form_factor": "phone"},
            }
            return path, json_type, json.dumps(body)
        if self.endpoint == "status":
            offset, stride, size = self.sample
            token = f"bench-token-{offset + stride * rng.randint(0, size - 1)}"
            return path, {"Authorization": f"Bearer {token}"}, ""
        if self.endpoint == "key_check":
            return path, {"Authorization": f"Bearer {self.key}"}, ""
        return path, {"Authorization": f"Api-Key {self.peer_key}"}, ""


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int = 0  # answers that were not 2xx
    errors: int = 0  # connect, read, write errors and timeouts
    first_failure: str = ""
    exhausted: bool = False  # redemption ran out of pre-issued codes
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process group
    wal_bytes: int = 0  # WAL the whole server wrote during the run

    def cpu_per_request_us(self, group: str) -> float:
        return self.cpu.get(group, 0.0) / max(1, self.requests) * 1e6

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def valid(self) -> bool:
        return not (self.failed or self.errors or self.exhausted or self.requests == 0)


LUA = r"""
local ENDPOINT, METHOD, PATH = %(endpoint)s, %(method)s, %(path)s
local APP_ID, KEY, PEER_KEY, USERS = %(app_id)s, %(key)s, %(peer_key)s, %(users)d
local TAG, PER_LANE = %(tag)s, %(per_lane)d
local OFFSET, STRIDE, SAMPLE = %(offset)d, %(stride)d, %(size)d

local threads = {}

function setup(thread)
  thread:set("lane", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  failed = 0
  first_failure = ""
  math.randomseed(os.time() * 100 + lane)
  if ENDPOINT == "floor" then
    static = wrk.format(METHOD, PATH, {["Content-Type"] = "application/json"},
      '{"app_id": "' .. APP_ID .. '"}')
  elseif ENDPOINT == "key_check" then
    static = wrk.format(METHOD, PATH, {["Authorization"] = "Bearer " .. KEY})
  elseif ENDPOINT == "peer" then
    static = wrk.format(METHOD, PATH, {["Authorization"] = "Api-Key " .. PEER_KEY})
  end
end

function request()
  n = n + 1
  if static then
    return static
  elseif ENDPOINT == "issuance" then
    local external_id
    if n %% 2 == 1 then
      external_id = "bench-new-" .. TAG .. "-" .. lane .. "-" .. n
    else
      external_id = "bench-user-" .. math.random(1, USERS)
    end
    return wrk.format(METHOD, PATH,
      {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. KEY},
      '{"external_id": "' .. external_id .. '"}')
  elseif ENDPOINT == "redemption" then
    local suffix = TAG .. "-" .. lane .. "-" .. n
    return wrk.format(METHOD, PATH, {["Content-Type"] = "application/json"},
      '{"authentication_code": "bench-code-' .. suffix .. '", "app_id": "' .. APP_ID ..
      '", "device": {"install_id": "bi-' .. suffix ..
      '", "platform": "ios", "form_factor": "phone"}}')
  else
    local token = "bench-token-" .. (OFFSET + STRIDE * math.random(0, SAMPLE - 1))
    return wrk.format(METHOD, PATH, {["Authorization"] = "Bearer " .. token})
  end
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    failed = failed + 1
    if first_failure == "" then
      first_failure = status .. " " .. string.gsub(string.sub(body or "", 1, 300), "%%s+", " ")
    end
  end
end

function done(summary, latency, requests)
  local failed_total, first, exhausted = 0, "", 0
  for _, thread in ipairs(threads) do
    failed_total = failed_total + thread:get("failed")
    if first == "" then first = thread:get("first_failure") end
    if PER_LANE > 0 and thread:get("n") > PER_LANE then exhausted = 1 end
  end
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%.0f %%.0f %%d %%d %%d\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), failed_total,
    e.connect + e.read + e.write + e.timeout, exhausted))
  io.write("BENCH_FIRST_FAILURE " .. first .. "\n")
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string literal


class Wrk:
    name = "wrk"

    def __init__(self, path: str, work: Path, connections: int) -> None:
        self.path = path
        self.script = work / "bench.lua"
        self.connections = connections
        self.lanes = max(1, min(os.cpu_count() or 1, connections))

    def describe(self) -> str:
        version = subprocess.run(  # noqa: S603 (wrk on PATH)
            [self.path, "-v"], capture_output=True, text=True, check=False
        ).stdout.split()[:2]
        return f"{' '.join(version)}, {self.lanes} threads, {self.connections} connections"

    def run(self, port: int, plan: Plan, seconds: float) -> Result:
        _, method, path = ENDPOINTS[plan.endpoint]
        offset, stride, size = plan.sample
        self.script.write_text(
            LUA
            % {
                "endpoint": lua_string(plan.endpoint),
                "method": lua_string(method),
                "path": lua_string(path),
                "app_id": lua_string(plan.app_id),
                "key": lua_string(plan.key),
                "peer_key": lua_string(plan.peer_key),
                "users": plan.users,
                "tag": lua_string(plan.tag),
                "per_lane": plan.per_lane,
                "offset": offset,
                "stride": stride,
                "size": size,
            }
        )
        done = subprocess.run(  # noqa: S603 (wrk on PATH, our arguments)
            [
                *(self.path, "-t", str(self.lanes), "-c", str(self.connections)),
                *("-d", f"{seconds}s", "--timeout", "5s", "-s", str(self.script)),
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 60,
        )
        lines = {
            line.split(" ", 1)[0]: line.partition(" ")[2]
            for line in done.stdout.splitlines()
            if line.startswith("BENCH")
        }
        if done.returncode or "BENCH" not in lines:
            raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        requests, micros, p50, p99, failed, errors, exhausted = (
            int(float(x)) for x in lines["BENCH"].split()
        )
        return Result(
            requests=requests,
            seconds=micros / 1e6,
            p50_ms=p50 / 1000,
            p99_ms=p99 / 1000,
            failed=failed,
            errors=errors,
            first_failure=lines.get("BENCH_FIRST_FAILURE", ""),
            exhausted=bool(exhausted),
        )


class PythonGenerator:
    """A closed loop of `connections` threads, each on one keep-alive connection."""

    name = "python"

    def __init__(self, connections: int) -> None:
        self.connections = connections
        self.lanes = connections

    def describe(self) -> str:
        return (
            f"Python: {self.connections} threads with one keep-alive "
            "http.client connection each; it shares the interpreter lock, so it saturates "
            "sooner than wrk would"
        )

    def run(self, port: int, plan: Plan, seconds: float) -> Result:
        _, method, _ = ENDPOINTS[plan.endpoint]
        latencies: list[list[float]] = [[] for _ in range(self.lanes)]
        statuses: Counter[int] = Counter()
        failures: list[str] = []
        errors = [0]
        counts = [0] * self.lanes
        lock = threading.Lock()
        start = threading.Barrier(self.lanes + 1)
        deadline = [0.0]

        def lane(number: int) -> None:
            rng = random.Random(number)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            start.wait()
            n = 0
            while time.monotonic() < deadline[0]:
                n += 1
                path, headers, body = plan.request(number, n, rng)
                began = time.perf_counter()
                try:
                    connection.request(method, path, body or None, headers)
                    response = connection.getresponse()
                    content = response.read()
                except OSError:
                    connection.close()
                    with lock:
                        errors[0] += 1
                    continue
                latencies[number].append(time.perf_counter() - began)
                with lock:
                    statuses[response.status] += 1
                    if not 200 <= response.status < 300 and not failures:
                        failures.append(
                            f"{response.status} {content[:300].decode(errors='ignore')}"
                        )
            counts[number] = n
            connection.close()

        threads = [threading.Thread(target=lane, args=(n,)) for n in range(self.lanes)]
        for thread in threads:
            thread.start()
        deadline[0] = time.monotonic() + seconds
        began = time.monotonic()
        start.wait()
        for thread in threads:
            thread.join()
        took = time.monotonic() - began
        every = sorted(t for lane_latencies in latencies for t in lane_latencies)
        if not every:
            return Result(0, took, 0, 0, errors=errors[0])
        return Result(
            requests=len(every),
            seconds=took,
            p50_ms=every[len(every) // 2] * 1000,
            p99_ms=every[min(len(every) - 1, int(len(every) * 0.99))] * 1000,
            failed=sum(n for status, n in statuses.items() if not 200 <= status < 300),
            errors=errors[0],
            first_failure=failures[0] if failures else "",
            exhausted=bool(plan.per_lane) and max(counts) > plan.per_lane,
        )


Generator = Wrk | PythonGenerator


# --------------------------------------------------------------------------- machine


def busy_cores(seconds: float) -> float:
    """How many cores the whole machine kept busy over `seconds` (/proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    busy_before, total_before = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    cores = os.cpu_count() or 1
    return cores * (busy_after - busy_before) / max(1, total_after - total_before)


CPU_GROUPS = ("web", "postgres", "redis", "generator")


def _process_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    """CPU seconds of this process and of its children that have ended (wrk)."""
    import resource

    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def cpu_by_group(server_pid: int, database: str) -> dict[str, dict[int, float]]:
    """CPU seconds spent so far, per process, by the web server's processes, the PostgreSQL
    backends of the bench's database, and Redis (the load generator is counted around its
    run). Another process's work on the machine is not counted, so these figures hold on a
    busy machine too."""
    found: dict[str, dict[int, float]] = {group: {} for group in CPU_GROUPS}
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                names[int(entry)] = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    stack = [server_pid]
    while stack:
        pid = stack.pop()
        found["web"][pid] = _process_cpu(pid)
        stack.extend(children.get(pid, []))
    for pid, name in names.items():
        if name.startswith("postgres: ") and f" {database} " in name:
            found["postgres"][pid] = _process_cpu(pid)
        elif name.startswith(("/usr/bin/redis-server", "redis-server")):
            found["redis"][pid] = _process_cpu(pid)
    return found


def cpu_spent(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds per group between two `cpu_by_group` readings. A process that started in
    between counts whole; one that ended in between (a database connection past
    CONN_MAX_AGE) loses what it spent since `before`: a slight undercount."""
    return {
        group: sum(
            seconds - before.get(group, {}).get(pid, 0.0)
            for pid, seconds in after.get(group, {}).items()
        )
        for group in CPU_GROUPS
    }


def log_problems(path: Path) -> list[str]:
    """The server's log lines above INFO (a rate limit failing open under load, say)."""
    problems = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            level = json.loads(line).get("level", "")
        except ValueError:
            level = "not JSON"
        if level not in ("DEBUG", "INFO"):
            problems.append(line[:300])
    return problems


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- the runs


@dataclass
class Bench:
    fixture: Fixture
    server: Server
    generator: Generator
    duration: float
    database: str
    database_url: str
    results: dict[str, list[Result]] = field(default_factory=dict)
    wal: Any = None

    def plan(self, endpoint: str, label: str, seconds: float) -> Plan:
        plan = Plan(
            endpoint=endpoint,
            app_id=self.fixture.app_id,
            key=self.fixture.key,
            peer_key=self.fixture.peer_key,
            users=self.fixture.users,
            tag=f"{RUN}{label}",
        )
        if endpoint == "redemption":
            lanes = self.generator.lanes
            plan.per_lane = int(seconds * MAX_REDEMPTIONS_PER_SECOND / lanes) + 100
            pre_issue(self.fixture, plan.tag, lanes, plan.per_lane)
        elif endpoint == "status":
            plan.sample = touch_devices(self.fixture)
        return plan

    def wal_position(self) -> int:
        """The server's WAL insert position, in bytes (a connection of the bench's own)."""
        if self.wal is None:
            self.wal = benchdb.admin_connection(self.database_url)
        (position,) = self.wal.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint"
        ).fetchone()
        return position

    def run(self, endpoint: str, label: str, seconds: float) -> Result:
        plan = self.plan(endpoint, label, seconds)
        wal_before = self.wal_position()
        before = cpu_by_group(self.server.process.pid, self.database)
        # wrk is a child process, the Python generator runs in this one: count both.
        generator_before = _own_cpu()
        result = self.generator.run(self.server.port, plan, seconds)
        generator = _own_cpu() - generator_before
        after = cpu_by_group(self.server.process.pid, self.database)
        result.cpu = cpu_spent(before, after)
        result.cpu["generator"] = generator
        result.wal_bytes = self.wal_position() - wal_before
        if not result.valid:
            why = []
            if result.failed:
                why.append(f"{result.failed} answers not 2xx, the first: {result.first_failure}")
            if result.errors:
                why.append(f"{result.errors} connection errors or timeouts")
            if result.exhausted:
                why.append("the pre-issued codes ran out (raise MAX_REDEMPTIONS_PER_SECOND)")
            if not result.requests:
                why.append("no request answered")
            raise Invalid(f"{endpoint} ({label}): {'; '.join(why)}")
        return result


class Invalid(Exception):
    """A run had failures: its figures mean nothing."""


RUN = secrets.token_hex(3)


def fmt_range(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def report(results: dict[str, list[Result]]) -> list[str]:
    """Prints the table; returns the goals missed."""
    rounds = len(results["floor"])

    def ratios(endpoint: str, base: str) -> list[float]:
        return [results[endpoint][r].rate / results[base][r].rate for r in range(rounds)]

    print()
    header = (
        f"{'endpoint':<11} {'req/s':>22} {'p50 ms':>7} {'p99 ms':>7}  "
        f"{'÷ floor':>22}  {'÷ peer':>22}  goal"
    )
    print(header)
    print("-" * len(header))
    missed = []
    for endpoint in results:
        rs = results[endpoint]
        vs_floor = fmt_range(ratios(endpoint, "floor"), 2)
        vs_peer = fmt_range(ratios(endpoint, "peer"), 2) if endpoint == "key_check" else ""
        goal = ""
        if endpoint in GOALS:
            base, least = GOALS[endpoint]
            median = statistics.median(ratios(endpoint, base))
            met = median >= least
            goal = f"÷ {base} >= {least:g}: {'met' if met else 'MISSED'}"
            if not met:
                missed.append(f"{endpoint} {median:.2f}x {base} < {least:g}x")
        print(
            f"{endpoint:<11} {fmt_range([r.rate for r in rs], 0):>22} "
            f"{statistics.median(r.p50_ms for r in rs):>7.2f} "
            f"{statistics.median(r.p99_ms for r in rs):>7.2f}  "
            f"{vs_floor:>22}  {vs_peer:>22}  {goal}"
        )
    print(
        f"\nreq/s and ratios: median (min-max) over {rounds} rounds, each ratio within one "
        "round; p50 and p99: median over rounds."
    )
    print(
        f"\nCPU per request, µs (median over rounds) {'':>2}"
        + "".join(f"{group:>11}" for group in (*CPU_GROUPS, "total"))
        + f"{'WAL B/req':>11}"
    )
    for endpoint in results:
        per = {
            group: statistics.median(r.cpu_per_request_us(group) for r in results[endpoint])
            for group in CPU_GROUPS
        }
        wal = statistics.median(r.wal_bytes / max(1, r.requests) for r in results[endpoint])
        print(
            f"{endpoint:<41}"
            + "".join(f"{per[g]:>11.0f}" for g in CPU_GROUPS)
            + f"{sum(per.values()):>11.0f}"
            + f"{wal:>11.0f}"
        )
    print(
        "WAL: what the whole server wrote during the run (other databases' writes count too). "
        "web: gunicorn's processes; postgres: the backends of the bench's database (not the "
        "WAL writer or checkpointer); generator: the load generator's own process."
    )
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--warm-up", type=int, default=2, help="seconds per endpoint")
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY (default: the config's)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed: its own DB")
    parser.add_argument("--keep", action="store_true", help="keep the database and Redis DB")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[name for name in ENDPOINTS if name != "floor"],
        help="these endpoints only (and the floor); goals of the others are not judged",
    )
    args = parser.parse_args()
    if (
        args.rounds < 1
        or args.duration < 1
        or args.warm_up < 1
        or args.connections < 1
        or args.users < 1
    ):
        parser.error("every number must be positive")
    redis_db = urlsplit(args.redis_url).path.lstrip("/") or "0"
    if redis_db == "0":
        parser.error("--redis-url must name a DB of the bench's own (not 0): it is flushed")

    import redis

    wrk = shutil.which("wrk")
    work = Path(tempfile.mkdtemp(prefix="portal-bench-http-"))
    generator: Generator = (
        Wrk(wrk, work, args.connections)
        if wrk and args.generator != "python"
        else PythonGenerator(args.connections)
    )
    if args.generator == "wrk" and not wrk:
        parser.error("wrk is not on PATH")

    configure(args.database_url, args.redis_url)
    database = benchdb.database_name(args.database_url)
    store = redis.Redis.from_url(args.redis_url)
    store.flushdb()
    benchdb.drop(args.database_url, [database], create=True)
    server = Server(work, args.workers)
    try:
        fixture = build(args.users)
        from django.db import connection

        connection.close()
        print(f"quiet machine check: {busy_cores(3):.2f} of {os.cpu_count()} cores busy")
        load_before = load_average()
        server.start()
        print(f"server: {server.command} ({server.shape()}), DEBUG off, bench.settings")
        print(f"        PostgreSQL {database}, Redis {args.redis_url}, rate limits counted")
        why = "" if wrk or args.generator == "python" else " (wrk is not on PATH)"
        print(f"load generator{why}: {generator.describe()}")
        print(f"runs: {args.rounds} rounds of {args.duration:g} s per endpoint, order rotated")
        print("endpoints:")
        for name, (what, method, path) in ENDPOINTS.items():
            print(f"  {name:<11} {method} {path}: {what}")
        bench = Bench(fixture, server, generator, args.duration, database, args.database_url)
        names = [name for name in ENDPOINTS if not args.only or name in ("floor", *args.only)]
        if "key_check" in names and "peer" not in names:
            names.append("peer")
        for name in names:
            bench.run(name, "w", args.warm_up)
        idle = busy_cores(2)
        results: dict[str, list[Result]] = {name: [] for name in names}
        for number in range(args.rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            line = []
            for name in order:
                result = bench.run(name, f"r{number}", args.duration)
                results[name].append(result)
                line.append(f"{name} {result.rate:.0f}/s")
            print(f"round {number + 1}: {', '.join(line)}", flush=True)
        load_after = load_average()
        missed = report(results)
        print(
            f"\nmachine: {os.cpu_count()} cores; load average (1, 5, 15 min) before "
            f"{load_before}, after {load_after}; between the warm-up and the rounds, with the "
            f"server idle, {idle:.2f} cores busy"
        )
        if idle > QUIET_BUSY_CORES:
            print(
                "WARNING: other work was running on this machine: absolute figures are "
                "unreliable, compare the ratios (each within one round)"
            )
    except Invalid as exc:
        print(f"INVALID: {exc}; the figures of this run mean nothing")
        return 1
    finally:
        server.stop()
        problems = log_problems(server.log_path)
        if problems:
            print(f"WARNING: the server logged {len(problems)} lines above INFO, the first:")
            print("\n".join(f"  {line}" for line in problems[:3]))
        if args.keep:
            print(f"kept: {args.database_url}, {args.redis_url}, the server's log in {work}")
        else:
            from django.db import connections

            connections.close_all()
            benchdb.drop(args.database_url, [database])
            store.flushdb()
            shutil.rmtree(work, ignore_errors=True)
    if missed:
        print(f"MISSED: {'; '.join(missed)}")
        return 1
    print("every goal met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
