"""The pieces that bound a wait on the database: the watchdog that interrupts a blocked call,
the guarded backend's deadlines on a live server, and which timeout each kind of process
gets. Faults on a frozen server are in test_database_faults.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import OperationalError, connection

from portal.db.config import is_runserver, process_kind
from portal.db.postgresql.base import Breaker, DatabaseWrapper
from portal.db.watchdog import Watchdog


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    here, there = socket.socketpair()
    with here, there:
        yield here, there


def test_a_call_that_outlives_its_deadline_is_interrupted(sockets):
    here, _there = sockets
    watchdog = Watchdog()
    started = time.monotonic()
    call = watchdog.watch(here.fileno(), 0.2)
    try:
        assert here.recv(1) == b""  # would block forever: nothing is ever sent
    finally:
        watchdog.release(call)
    assert call.expired
    assert 0.2 <= time.monotonic() - started < 1


def test_a_call_that_finishes_in_time_is_untouched(sockets):
    here, there = sockets
    watchdog = Watchdog()
    call = watchdog.watch(here.fileno(), 0.3)
    there.send(b"x")
    assert here.recv(1) == b"x"
    watchdog.release(call)
    time.sleep(0.5)  # past the deadline: the socket is still whole
    there.send(b"y")
    assert here.recv(1) == b"y"
    assert not call.expired


def test_a_shorter_deadline_wakes_the_watchdog_early():
    """The watchdog sleeps until the earliest deadline; a later call with an earlier one
    must not wait for the first to expire."""
    watchdog = Watchdog()
    slow, slow_peer = socket.socketpair()
    quick, quick_peer = socket.socketpair()
    with slow, slow_peer, quick, quick_peer:
        long_call = watchdog.watch(slow.fileno(), 30)
        started = time.monotonic()
        call = watchdog.watch(quick.fileno(), 0.2)
        assert quick.recv(1) == b""
        assert time.monotonic() - started < 1
        watchdog.release(call)
        watchdog.release(long_call)
        assert not long_call.expired


def test_a_descriptor_closed_mid_call_and_reused_is_never_shut_down():
    """libpq closes its socket itself when the server drops the connection; the number can
    be reused by another socket of the process before the guarded call is released."""
    watchdog = Watchdog()
    here, there = socket.socketpair()
    number = here.fileno()
    call = watchdog.watch(number, 0.2)
    here.close()  # as libpq does in a failing call
    reused, reused_peer = socket.socketpair()
    with reused, reused_peer, there:
        time.sleep(0.5)  # the deadline passes while the number belongs to someone else
        watchdog.release(call)
        assert call.expired
        reused_peer.send(b"x")
        assert reused.recv(1) == b"x"  # untouched, whichever number it got
        reused.send(b"y")
        assert reused_peer.recv(1) == b"y"


def test_the_breaker_lets_one_call_probe_while_the_others_fail_at_once():
    breaker = Breaker()
    assert breaker.enter() is False  # closed: nothing to do
    breaker.failed(probe=False)  # a call missed its deadline
    assert breaker.enter() is True  # the next call probes
    with pytest.raises(OperationalError, match="being tried again"):
        breaker.enter()  # the others do not wait meanwhile
    breaker.failed(probe=True)  # the probe missed too: the next call probes again
    assert breaker.enter() is True
    breaker.answered()  # it answered: closed for everybody
    assert breaker.enter() is False
    assert breaker.enter() is False


def test_a_forked_child_gets_a_watchdog_of_its_own(sockets):
    """gunicorn and Celery fork their workers: the parent's watchdog thread does not exist in
    the child, which starts its own."""
    here, _there = sockets
    watchdog = Watchdog()
    watchdog.release(watchdog.watch(here.fileno(), 5))  # the parent's thread runs
    pid = os.fork()
    if pid == 0:  # the child: interrupted within the deadline, or it never returns
        call = watchdog.watch(here.fileno(), 0.2)
        here.recv(1)
        os._exit(0 if call.expired else 1)
    deadline = time.monotonic() + 5
    while (waited := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if waited == (0, 0):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child's call was never interrupted")
    assert os.waitstatus_to_exitcode(waited[1]) == 0


@pytest.mark.parametrize(
    ("argv", "environ", "kind"),
    [
        (["/srv/.venv/bin/gunicorn", "portal.wsgi"], {}, "web"),
        (["manage.py", "runserver"], {}, "web"),
        (["/srv/.venv/bin/pytest"], {}, "web"),
        (["/srv/.venv/bin/celery", "-A", "portal", "worker"], {}, "batch"),
        (["/usr/lib/python3/site-packages/celery/__main__.py", "beat"], {}, "batch"),
        (["manage.py", "migrate"], {}, "batch"),
        (["/srv/.venv/bin/django-admin", "expire_auth_codes"], {}, "batch"),
        (["/srv/.venv/bin/gunicorn"], {"PORTAL_PROCESS": "batch"}, "batch"),
        (["manage.py", "migrate"], {"PORTAL_PROCESS": "web"}, "web"),
    ],
)
def test_the_process_kind_decides_the_statement_timeout(argv, environ, kind):
    assert process_kind(argv, environ) == kind


def test_runserver_is_told_apart():
    assert is_runserver(["manage.py", "runserver", "0.0.0.0:8000"])
    assert not is_runserver(["manage.py", "migrate"])
    assert not is_runserver(["/srv/.venv/bin/gunicorn", "portal.wsgi"])


def _database_settings(argv: list[str], **environ: str) -> str:
    """The database settings a process started as `argv` gets from the environment."""
    program = (
        f"import sys; sys.argv = {argv!r}; import portal.settings as s; "
        "d = s.DATABASES['default']; "
        "print(d['ENGINE'], d['CONN_MAX_AGE'], d['OPTIONS']['statement_timeout'])"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CONN_MAX_AGE", "DATABASE_", "PORTAL_PROCESS"))
    }
    env.update(DATABASE_URL="postgres://portal@127.0.0.1:5432/portal", SECRET_KEY="x", **environ)
    return subprocess.run(  # noqa: S603 (our own interpreter and program)
        [sys.executable, "-c", program],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()


def test_runserver_keeps_no_connection_open_and_others_do():
    """runserver serves each request in a new thread: a persistent connection would stay
    open per finished thread until PostgreSQL runs out of them."""
    assert _database_settings(["manage.py", "runserver"]) == ["portal.db.postgresql", "0", "5.0"]
    assert _database_settings(["gunicorn"]) == ["portal.db.postgresql", "60", "5.0"]
    assert _database_settings(["manage.py", "runserver"], CONN_MAX_AGE="30")[1] == "30"
    assert _database_settings(["celery", "worker"], DATABASE_BATCH_STATEMENT_TIMEOUT="0") == [
        "portal.db.postgresql",
        "60",
        "0.0",
    ]


# --- the guarded backend on the live (shared) server -----------------------------------------


@pytest.fixture
def second_connection(db) -> Iterator:
    """Opens a second connection to the test database with the options a test gives."""
    opened = []

    def open_with(**options: float) -> DatabaseWrapper:
        settings_dict = {
            **connection.settings_dict,
            "OPTIONS": {**connection.settings_dict["OPTIONS"], **options},
        }
        wrapper = DatabaseWrapper(settings_dict, alias="second")
        opened.append(wrapper)
        return wrapper

    yield open_with
    for wrapper in opened:
        wrapper.close()


def _backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.postgres
def test_a_statement_longer_than_statement_timeout_fails_and_the_connection_stays(
    second_connection,
):
    wrapper = second_connection(statement_timeout=0.3)
    pid = _backend_pid(wrapper)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="statement timeout"), wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(3)")
    assert time.monotonic() - started < 1  # the server's own timeout, before the client's
    assert wrapper.is_usable()
    assert _backend_pid(wrapper) == pid


@pytest.mark.postgres
def test_a_call_past_the_client_deadline_drops_the_connection(second_connection):
    """What happens when the server cannot answer at all, shown on one that answers late."""
    wrapper = second_connection(statement_timeout=10)
    pid = _backend_pid(wrapper)
    wrapper.statement_deadline = 0.3
    started = time.monotonic()
    with (
        pytest.raises(OperationalError, match=r"did not answer within 0.3 s"),
        wrapper.cursor() as cursor,
    ):
        cursor.execute("SELECT pg_sleep(3)")
    assert time.monotonic() - started < 1
    # Django checks a connection after an error and drops it when broken: the next use
    # connects again.
    assert wrapper.errors_occurred
    wrapper.close_if_unusable_or_obsolete()
    assert wrapper.connection is None
    assert _backend_pid(wrapper) != pid


@pytest.mark.postgres
def test_the_statement_timeout_reaches_the_server(second_connection):
    wrapper = second_connection(statement_timeout=2.5)
    with wrapper.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("2500ms",)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_health_check_pings_only_a_connection_idle_for_a_while(monkeypatch) -> None:
    """`CONN_HEALTH_CHECKS` without a `SELECT 1` round trip per request under load: a
    connection that answered within TRUSTED_FOR_SECONDS is trusted; an idle one is pinged,
    and one the server dropped meanwhile is replaced before the request uses it."""
    from django.db import connections

    from portal.db.postgresql import base as portal_base

    pings = []
    real_is_usable = DatabaseWrapper.is_usable
    monkeypatch.setattr(
        DatabaseWrapper, "is_usable", lambda self: pings.append(1) or real_is_usable(self)
    )
    db = connections.create_connection("default")
    try:

        def request() -> int:
            db.health_check_done = False  # what Django does at each request's start
            with db.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                return cursor.fetchone()[0]

        first_pid = request()
        assert db.health_check_enabled
        assert request() == first_pid and pings == []  # answered a moment ago: no ping

        db.answered_at -= portal_base.TRUSTED_FOR_SECONDS
        assert request() == first_pid and pings == [1]  # idle: pinged, and sound

        with connection.cursor() as cursor:  # the server drops the idle connection
            cursor.execute("SELECT pg_terminate_backend(%s)", [first_pid])
        db.answered_at -= portal_base.TRUSTED_FOR_SECONDS
        assert request() != first_pid  # pinged, found dead, replaced: the request works
    finally:
        db.close()
