"""A hung database fails fast. The faults are real: a throwaway PostgreSQL cluster of the
test's own (initdb + pg_ctl on a free port) serves a real portal process (gunicorn, or
runserver), and is frozen with SIGSTOP (every process of it, connections left open) or held
up by a lock. The shared server is never touched."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.throwaway import ThrowawayPostgres, free_port

pytestmark = pytest.mark.postgres

# The portal processes under test get short timeouts, so that the faults cost seconds.
STATEMENT_TIMEOUT = 1  # DATABASE_STATEMENT_TIMEOUT; the client's deadline is 1 s later
CONNECT_TIMEOUT = 2  # DATABASE_CONNECT_TIMEOUT, psycopg's minimum


def _environment(cluster: ThrowawayPostgres, **extra: str) -> dict[str, str]:
    """The portal's environment, pointed at the cluster; nothing inherited from the test run
    that would change the database, the settings module or the process kind."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "CONN_MAX_AGE", "PORTAL_", "REDIS_", "DJANGO_"))
        and key not in {"GUNICORN_CMD_ARGS", "PORT"}
    }
    return {
        **inherited,
        "DATABASE_URL": cluster.url,
        "SECRET_KEY": "database-fault-tests-only",
        "DATABASE_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
        "DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "LOG_FORMAT": "text",
        **extra,
    }


# The cluster's preparation as one management process (one Django start instead of three):
# migrate, then an app and a key that may link and read users, the key printed as JSON.
_PREPARE = """
import io, json
from django.core.management import call_command

def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())

call_command("migrate", "--no-input", verbosity=0)
app = run("create_app", "Fault tests", "--json")
key = ["--app", app["app_id"], "--name", "faults", "--scopes", "user.link,user.read", "--json"]
print(json.dumps(run("create_api_key", *key)))
"""


def _prepare(cluster: ThrowawayPostgres) -> dict:
    done = subprocess.run(  # noqa: S603 (our own interpreter and manage.py)
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", _PREPARE],
        cwd=settings.BASE_DIR,
        env=_environment(cluster),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayPostgres]:
    """The cluster, migrated, with an app and a key that may link and read users."""
    server = ThrowawayPostgres()
    try:
        server.start()
        server.api_key = _prepare(server)["api_key"]
        yield server
    finally:
        server.remove()


class Portal:
    """A portal web process of our own, answering on a free port."""

    def __init__(self, cluster: ThrowawayPostgres, argv: list[str], **environ: str) -> None:
        self.port = free_port()
        self.api_key = cluster.api_key
        self.log_path = cluster.directory / f"portal-{self.port}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own programs and arguments)
                [arg.format(port=self.port) for arg in argv],
                cwd=settings.BASE_DIR,
                env=_environment(cluster, PORT=str(self.port), **environ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.1)

    def request(
        self, method: str, path: str, body: dict | None = None, timeout: float = 15
    ) -> tuple[int, dict, float]:
        """Status, JSON body and seconds taken."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        started = time.monotonic()
        try:
            connection.request(method, path, json.dumps(body) if body else None, headers)
            response = connection.getresponse()
            content = response.read()
        finally:
            connection.close()
        return response.status, json.loads(content or b"{}"), time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


GUNICORN = [
    str(Path(sys.executable).parent / "gunicorn"),
    "portal.wsgi",
    "--bind=127.0.0.1:{port}",
    "--workers=1",
    "--worker-class=sync",
    "--timeout=30",
    "--no-control-socket",  # its default path is one per user, shared with other gunicorns
]
RUNSERVER = [sys.executable, "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"]
# As the Procfile starts the web process: gthread workers (portal/gunicorn.py).
THREADED = [
    str(Path(sys.executable).parent / "gunicorn"),
    "-c",
    "python:portal.gunicorn",
    "portal.wsgi",
]


@pytest.fixture
def gunicorn(cluster) -> Iterator[Portal]:
    """One sync worker keeping its connection (CONN_MAX_AGE=60), as production does."""
    portal = Portal(cluster, GUNICORN, CONN_MAX_AGE="60")
    try:
        yield portal
    finally:
        portal.stop()


def _lookup(portal: Portal) -> tuple[int, dict, float]:
    return portal.request("GET", "/users?external_id=alice")


def test_a_frozen_database_answers_503_in_seconds_and_recovers(cluster, gunicorn):
    assert gunicorn.request("POST", "/users/auth-code", {"external_id": "alice"})[0] == 200
    assert _lookup(gunicorn)[0] == 200

    cluster.freeze()
    try:
        status, body, took = _lookup(gunicorn)
        # The kept connection answered a moment ago, so it is not pinged: the statement
        # outlives its deadline and the connection is dropped (had it been idle, the ping would
        # have, and connecting again would have timed out too): then the 503.
        assert (status, body["errorCode"]) == (503, "SERVICE_UNAVAILABLE")
        assert took < 2 * CONNECT_TIMEOUT + 1, took
        for _ in range(2):
            status, body, took = gunicorn.request("GET", "/readyz")
            assert status == 503
            assert body["checks"] == {"database": False}
            assert took < 2, took
    finally:
        cluster.thaw()

    status, body, _ = _lookup(gunicorn)
    assert status == 200, body
    assert body["external_id"] == "alice"
    assert gunicorn.request("GET", "/readyz")[:2] == (
        200,
        {"status": "ok", "checks": {"database": True}},
    )
    log = gunicorn.log()
    assert re.search(
        "database unavailable: OperationalError: "
        "(the database did not answer within|connection timeout expired)",
        log,
    )
    assert log.count("readiness: database does not answer") == 1  # one line per streak
    assert "readiness: database answers again" in log
    assert "Service Unavailable: /readyz" not in log
    assert "Traceback" not in log


def test_under_load_a_frozen_database_costs_one_wait_then_fails_at_once(cluster):
    """Every thread of a web process busy with requests when PostgreSQL freezes: each waits
    out its deadline once; from then on one call at a time tries the database and the others
    answer 503 at once, so the process keeps answering its health checks."""
    portal = Portal(cluster, THREADED, CONN_MAX_AGE="60", WEB_CONCURRENCY="1", WEB_THREADS="4")
    answers: list[tuple[int, dict, float]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            answers.append(_lookup(portal))

    try:
        for _ in range(8):
            assert _lookup(portal)[0] in (200, 404)  # every thread keeps a connection
        cluster.freeze()
        clients = [threading.Thread(target=client) for _ in range(12)]
        for thread in clients:
            thread.start()
        time.sleep(CONNECT_TIMEOUT + 1.5)  # the first wave has missed its deadlines
        ready = [portal.request("GET", "/readyz") for _ in range(3)]
        alive = [portal.request("GET", "/healthz") for _ in range(3)]
        stop.set()
        for thread in clients:
            thread.join()
    finally:
        cluster.thaw()
    try:
        assert _lookup(portal)[0] in (200, 404)  # the first request after SIGCONT
    finally:
        portal.stop()

    assert {status for status, _, _ in answers} == {503}, answers
    quick = [took for _, _, took in answers if took < 0.5]
    assert len(quick) > len(answers) * 0.8, sorted(took for _, _, took in answers)
    assert all(status == 503 and took < 2 for status, _, took in ready), ready
    assert all(status == 200 and took < 1 for status, _, took in alive), alive


def test_a_statement_past_statement_timeout_answers_503_and_keeps_the_connection(cluster, gunicorn):
    assert _lookup(gunicorn)[0] in (200, 404)
    [backend] = cluster.backends()
    with cluster.connect() as holder, holder.transaction():
        # Every key check now waits for the lock, as behind a long migration.
        holder.execute("LOCK TABLE accounts_apikey IN ACCESS EXCLUSIVE MODE")
        status, body, took = _lookup(gunicorn)
    assert (status, body["errorCode"]) == (503, "SERVICE_UNAVAILABLE")
    # PostgreSQL's own statement timeout answered, before the client's deadline.
    assert STATEMENT_TIMEOUT <= took < STATEMENT_TIMEOUT + 1, took
    assert "canceling statement due to statement timeout" in gunicorn.log()

    assert _lookup(gunicorn)[0] in (200, 404)
    assert cluster.backends() == {backend}  # the same connection served the next request


def test_runserver_leaves_no_connection_behind(cluster):
    """runserver serves each request in a thread of its own: connections kept past the
    request (CONN_MAX_AGE) would pile up, one per finished thread."""
    portal = Portal(cluster, RUNSERVER)
    try:
        before = cluster.backends()  # runserver's own, from its start-up checks
        statuses: list[int] = []

        def client() -> None:
            statuses.extend(_lookup(portal)[0] for _ in range(3))

        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        assert set(statuses) <= {200, 404} and len(statuses) == 24, statuses
        deadline = time.monotonic() + 3
        while (left := cluster.backends() - before) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left
    finally:
        portal.stop()
