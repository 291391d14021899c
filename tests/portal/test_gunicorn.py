"""The web process exactly as the Procfile starts it (gunicorn with `portal/gunicorn.py`), on a
throwaway PostgreSQL database of its own: slow clients cannot starve it, what gunicorn refuses
itself is answered in the contract's envelope, and proxy headers are trusted only when
NUM_PROXIES says a proxy of ours is in front."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from psycopg import sql

from tests.throwaway import free_port

# django_db: the web process's database is a copy of the test database, which is made for it.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

BASE_DIR = Path(__file__).resolve().parents[2]
MANAGE = [sys.executable, str(BASE_DIR / "manage.py")]
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def procfile_command(process: str) -> str:
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise AssertionError(f"no {process!r} process in the Procfile")


def _database_url(name: str) -> str:
    return urlsplit(settings.TEST_DATABASE_URL)._replace(path=f"/{name}").geturl()


@pytest.fixture(scope="module")
def environment(django_db_setup: None) -> Iterator[dict[str, str]]:
    """What the web process gets: a throwaway database on the test server, migrated (a copy of
    this worker's migrated test database, as `migrate` would make it), a secret key, no Redis,
    DEBUG unset. The database is dropped afterwards."""
    name = f"portal_gunicorn_test_{secrets.token_hex(4)}"
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATABASE_URL": _database_url(name),
        "SECRET_KEY": secrets.token_urlsafe(50),
    }
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(_database_url("postgres"), autocommit=True, connect_timeout=5) as admin:
        admin.execute(create)
        try:
            copy_database(connection.settings_dict["NAME"], name)
            yield env
        finally:
            admin.execute(drop)


def copy_database(source: str, target: str) -> None:
    """Schema and rows of `source` into the empty `target` (pg_dump | pg_restore): a second of
    CPU less than a Django process running the migrations."""
    dump, restore = (shutil.which(program) for program in ("pg_dump", "pg_restore"))
    assert dump and restore, "PostgreSQL's client programs (pg_dump, pg_restore) are not installed"
    dumping = subprocess.Popen(  # noqa: S603 (PostgreSQL's own program, our own arguments)
        [dump, "--format=custom", _database_url(source)], stdout=subprocess.PIPE
    )
    restored = subprocess.run(  # noqa: S603 (PostgreSQL's own program, our own arguments)
        [restore, "--exit-on-error", "--single-transaction", "--dbname", _database_url(target)],
        stdin=dumping.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    dumping.stdout.close()
    assert (dumping.wait(timeout=60), restored.returncode) == (0, 0), restored.stderr


def manage(env: dict[str, str], *arguments: str) -> str:
    """What the management command printed."""
    result = subprocess.run(  # noqa: S603 (our own manage.py, our own arguments)
        [*MANAGE, *arguments],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class Web:
    """The Procfile's web line run by a shell, as honcho runs it, with PORT set."""

    def __init__(self, environment: dict[str, str], log: Path, **extra: str) -> None:
        self.port = free_port()
        self.log = log
        self.terminated = False
        with log.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603 (the Procfile's own command)
                ["/bin/sh", "-c", procfile_command("web")],
                cwd=BASE_DIR,
                env={**environment, **extra, "PORT": str(self.port)},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> Web:
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except OSError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def terminate(self) -> None:
        """Asks for gunicorn's graceful shutdown (SIGTERM), once."""
        if not self.terminated:
            self.terminated = True
            with contextlib.suppress(ProcessLookupError):  # it never started
                os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def request(self, method: str, path: str, **kwargs: Any) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        connection.request(method, path, **kwargs)
        response = connection.getresponse()
        response.body = response.read()
        connection.close()
        return response


@pytest.fixture(scope="module")
def webs(
    environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Web]]:
    """Two web processes, booting side by side. "direct": no proxy declared (NUM_PROXIES
    unset), HSTS on so that its header shows which requests the portal believed secure.
    "behind proxy": the production settings, NUM_PROXIES=1 and https enforced."""
    logs = tmp_path_factory.mktemp("web")
    started = {
        "direct": Web(environment, logs / "direct.log", SECURE_HSTS_SECONDS="3600"),
        "behind proxy": Web(
            environment,
            logs / "behind-proxy.log",
            WEB_CONCURRENCY="1",
            NUM_PROXIES="1",
            SECURE_SSL_REDIRECT="true",
            SECURE_HSTS_SECONDS="3600",
        ),
    }
    try:
        yield started
    finally:
        for web in started.values():
            web.terminate()  # both shut down at once
        for web in started.values():
            web.stop()


@pytest.fixture(scope="module")
def web(webs: dict[str, Web]) -> Web:
    return webs["direct"].wait_ready()


@pytest.fixture(scope="module")
def web_behind_proxy(webs: dict[str, Web]) -> Web:
    return webs["behind proxy"].wait_ready()


# An app and a key that may link users, made by the management commands in one process (one
# Django start instead of two); the key is printed as JSON.
_CREATE_KEY = """
import io, json
from django.core.management import call_command

def run(*args):
    out = io.StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())

app = run("create_app", "Gunicorn test")
key = ["--app", app["app_id"], "--name", "backend", "--scopes", "user.link"]
print(json.dumps(run("create_api_key", *key)))
"""


@pytest.fixture(scope="module")
def api_key(environment: dict[str, str], webs: dict[str, Web]) -> str:
    """Made with the management commands while the web processes boot (hence `webs`)."""
    return json.loads(manage(environment, "shell", "--no-imports", "-c", _CREATE_KEY))["api_key"]


def raw_exchange(port: int, data: bytes) -> http.client.HTTPResponse:
    """Sends bytes no HTTP library would send, and reads the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.body = response.read()
        return response


class SlowClients:
    """Clients that announce a small JSON body and send it one byte every half second: each
    holds a request open for as long as it likes, as a phone on a bad network would."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets = []
        head = (
            b"POST /sdk/users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        )
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(head)
            self.sockets.append(sock)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def _dribble(self) -> None:
        while not self.stop.wait(0.5):
            for sock in self.sockets:
                sock.sendall(b" ")

    def none_answered(self) -> bool:
        """True while every slow request is still being read: none got an answer or was
        closed (either would make its socket readable)."""
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                sock.recv(1)
            except BlockingIOError:
                continue
            finally:
                sock.setblocking(True)
            return False
        return True

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def timed(call: Callable[[], http.client.HTTPResponse]) -> tuple[http.client.HTTPResponse, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


# 8 as in the issue; 12 is more than one worker's threads (WEB_THREADS=8): only a worker that
# stops accepting while its threads are all busy keeps the next request from queueing there.
@pytest.mark.parametrize("count", [8, 12])
def test_slow_clients_do_not_starve_health_checks_or_issuance(
    api_key: str, web: Web, count: int
) -> None:
    slow = SlowClients(web.port, count)
    try:
        time.sleep(0.5)  # each slow request is in a thread by now, reading its body
        for attempt in range(5):
            response, seconds = timed(lambda: web.request("GET", "/healthz"))
            assert response.status == 200
            assert seconds < 1, f"/healthz took {seconds:.2f} s (attempt {attempt})"
            issued, seconds = timed(
                lambda attempt=attempt: web.request(
                    "POST",
                    "/users/auth-code",
                    body=json.dumps({"external_id": f"slow-test-{count}-{attempt}"}),
                    headers={
                        "Authorization": f"Bearer {api_key}",
                        "Content-Type": "application/json",
                    },
                )
            )
            assert issued.status == 200, issued.body
            assert json.loads(issued.body)["authentication_code"]
            assert seconds < 1, f"issuance took {seconds:.2f} s (attempt {attempt})"
        assert slow.none_answered()  # they were holding their threads all along
    finally:
        slow.close()


REFUSALS = {
    "request line too long": (
        b"GET /users?external_id=" + b"refused-customer-" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
        "request line is too long",
    ),
    "too many header fields": (
        b"GET /users?external_id=refused-customer HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Filler-%d: 1\r\n" % number for number in range(80))
        + b"\r\n",
        431,
        "headers are too large",
    ),
    "header field too large": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
        431,
        "headers are too large",
    ),
    "malformed request line": (
        b"GET /users?external_id=refused-customer\r\nHost: x\r\n\r\n",
        400,
        "Malformed HTTP request",
    ),
    "malformed header": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        400,
        "Malformed HTTP request",
    ),
}


@pytest.mark.parametrize("case", REFUSALS.keys())
def test_gunicorn_refusals_are_the_json_envelope_with_a_request_id(web: Web, case: str) -> None:
    data, status, message = REFUSALS[case]
    response = raw_exchange(web.port, data)
    assert response.status == status
    assert response.getheader("Content-Type") == "application/json"
    request_id = response.getheader("X-Request-ID")
    assert REQUEST_ID.fullmatch(request_id)
    body = json.loads(response.body)
    assert body["errorCode"] == "INVALID_REQUEST"
    assert message in body["message"]
    assert body["request_id"] == request_id
    assert "refused-customer" not in body["message"]  # the request is never quoted back
    log = web.log.read_text()
    assert request_id in log  # an operator finds the refusal by the id the client got
    assert "refused-customer" not in log


def test_a_normal_answer_carries_a_request_id_and_no_access_log_line(web: Web) -> None:
    response = web.request("GET", "/healthz?external_id=logged-customer")
    assert response.status == 200
    assert REQUEST_ID.fullmatch(response.getheader("X-Request-ID"))
    echoed = web.request("GET", "/healthz", headers={"X-Request-ID": "t-gunicorn-1"})
    assert echoed.getheader("X-Request-ID") == "t-gunicorn-1"
    time.sleep(0.2)  # the log line, if any, is written after the answer
    assert "logged-customer" not in web.log.read_text()


def test_without_proxies_a_forged_forwarded_proto_is_not_trusted(web: Web) -> None:
    forged = web.request("GET", "/healthz", headers={"X-Forwarded-Proto": "https"})
    assert forged.status == 200
    assert forged.getheader("Strict-Transport-Security") is None  # still plain http
    cookie = web.request("GET", "/admin/login/").getheader("Set-Cookie")
    assert "csrftoken=" in cookie
    assert "Secure" not in cookie  # the README's first run signs in over plain http


def test_behind_a_proxy_https_is_trusted_and_enforced(web_behind_proxy: Web) -> None:
    plain = web_behind_proxy.request("GET", "/api/schema/")
    assert plain.status == 301
    assert plain.getheader("Location").startswith("https://")

    secure = web_behind_proxy.request(
        "GET", "/admin/login/", headers={"X-Forwarded-Proto": "https"}
    )
    assert secure.status == 200
    assert secure.getheader("Strict-Transport-Security") == "max-age=3600"
    assert "Secure" in secure.getheader("Set-Cookie")


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_checks_are_not_redirected_to_https(web_behind_proxy: Web, path: str) -> None:
    assert web_behind_proxy.request("GET", path).status == 200
