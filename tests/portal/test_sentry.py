"""Error reports reach Sentry (a local HTTP server stands in for it) with the request id as a
tag, and without the Authorization header, the API key, the external id or the body: from
the web (a real WSGI server) and from a Celery worker started as the Procfile starts it."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from celery import Celery
from django.conf import settings
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response

import portal.urls
from accounts.api import AuthCodeView
from portal import context
from portal.sentry import init_sentry, scrub_event
from tests.celery_worker import private_keys, wait_until


class _IssueThenFail(AuthCodeView):
    """The real issuance (API key, body, external id in the frames), then an unexpected bug."""

    def post(self, request: Request) -> Response:
        super().post(request)
        raise RuntimeError("a bug after issuing")


urlpatterns = [path("test/issue-then-fail", _IssueThenFail.as_view()), *portal.urls.urlpatterns]
handler400 = portal.urls.handler400
handler404 = portal.urls.handler404
handler500 = portal.urls.handler500


class _Collector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.envelopes.append(body.decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what arrived, not the access log."""


@pytest.fixture
def collector() -> Iterator[ThreadingHTTPServer]:
    """Stands in for Sentry: keeps every envelope POSTed to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.envelopes = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.dsn = f"http://publickey@127.0.0.1:{server.server_address[1]}/1"
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def sentry(collector: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """The SDK in this process, initialised as the settings do; closed afterwards so that no
    other test reports anywhere."""
    assert init_sentry(dsn=collector.dsn, environment="test", traces_sample_rate=0.0)
    try:
        yield collector
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)


def _events(server: ThreadingHTTPServer, marker: str) -> list[tuple[str, dict[str, Any]]]:
    """(the whole envelope as sent, the event in it) for every error event naming `marker`."""
    found = []
    for envelope in list(server.envelopes):
        lines = envelope.split("\n")[1:]
        for header, payload in zip(lines[::2], lines[1::2], strict=False):
            if json.loads(header).get("type") == "event" and marker in payload:
                found.append((envelope, json.loads(payload)))
    return found


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls(__name__)
def test_an_unexpected_error_is_reported_with_its_request_id_and_without_secrets(
    sentry, live_server, api_key
):
    assert sentry_sdk.get_client().should_send_default_pii() is False
    external_id = "ext-secret-9f4b1c"
    request = urllib.request.Request(  # noqa: S310 (the test's own server)
        f"{live_server.url}/test/issue-then-fail?external_id={external_id}",
        data=json.dumps({"external_id": external_id}).encode(),
        headers={
            "Authorization": f"Bearer {api_key.full_key}",
            "Content-Type": "application/json",
            "Cookie": "sessionid=cookie-secret-51ab",
            "X-Request-ID": "t-sentry-1",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert answer.value.code == 500
    assert json.load(answer.value)["request_id"] == "t-sentry-1"
    sentry_sdk.flush(timeout=5)

    ((raw, event),) = _events(sentry, "a bug after issuing")  # one report, not one per log line
    assert event["tags"]["request_id"] == "t-sentry-1"
    assert event["environment"] == "test"
    assert event["transaction"] == "/test/issue-then-fail"
    assert [value["value"] for value in event["exception"]["values"]] == ["a bug after issuing"]
    reported = event["request"]
    assert reported["method"] == "POST"
    assert reported["url"] == f"{live_server.url}/test/issue-then-fail"
    assert reported["headers"]["X-Request-Id"] == "t-sentry-1"
    assert {"authorization", "cookie"}.isdisjoint(name.lower() for name in reported["headers"])
    assert {"data", "query_string", "cookies", "env"}.isdisjoint(reported)
    secret = api_key.full_key.split(".", 1)[1]
    for leak in (secret, external_id, "cookie-secret-51ab", "Bearer"):
        assert leak not in raw


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """Broker keys of this test's own on the shared Redis, deleted afterwards."""
    with private_keys(settings.TEST_REDIS_URL) as prefix:
        yield prefix


@pytest.mark.redis
def test_a_failing_task_on_a_worker_is_reported_with_the_request_id_it_carries(
    collector, key_prefix: str, tmp_path: Path
):
    """A worker process as the Procfile starts it, with SENTRY_DSN in its environment (and
    portal.settings with the test's key prefix). Its database has no tables, so the purge
    task fails."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PROMETHEUS_", "DJANGO_", "SENTRY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tests.worker_settings",
        TEST_REDIS_KEY_PREFIX=key_prefix,
        SECRET_KEY="tests-only-secret-key-not-for-production",
        DATABASE_URL=f"sqlite:///{tmp_path / 'no-tables.sqlite3'}",
        REDIS_URL=settings.TEST_REDIS_URL,
        SENTRY_DSN=collector.dsn,
        SENTRY_ENVIRONMENT="test-worker",
        LOG_LEVEL="WARNING",
    )
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "--concurrency", "1",
             "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
            cwd=settings.BASE_DIR, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # Not the current app: shared tasks called later in this process stay on the portal's.
        sender = Celery("sender", broker=settings.TEST_REDIS_URL, set_as_current=False)
        sender.conf.broker_transport_options = {"global_keyprefix": key_prefix}
        token = context.request_id.set("t-task-1")
        try:
            sender.send_task("accounts.tasks.purge_deleted_user", args=["a" * 24])
        finally:
            context.request_id.reset(token)
            sender.close()
        arrived = wait_until(lambda: bool(_events(collector, "no such table")), timeout=30)
    finally:
        worker.terminate()
        worker.wait(timeout=15)
    assert arrived, log_path.read_text()

    ((raw, event),) = _events(collector, "no such table")
    assert event["tags"]["request_id"] == "t-task-1"
    assert event["environment"] == "test-worker"
    assert event["extra"]["celery-job"]["task_name"] == "accounts.tasks.purge_deleted_user"
    assert "a" * 24 not in raw  # task arguments are not sent


def test_database_error_details_and_query_strings_are_cut_from_reports():
    """PostgreSQL quotes the conflicting row (an external id) in the DETAIL of an error; an
    outgoing call's URL may carry one in its query string."""
    event = {
        "exception": {
            "values": [
                {
                    "type": "IntegrityError",
                    "value": 'duplicate key value violates unique constraint "uniq"\n'
                    "DETAIL:  Key (app_id, external_id)=(1, ext-secret) already exists.",
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {
                    "category": "httplib",
                    "data": {"url": "http://hook.test/in?user=ext-secret", "http.query": "x"},
                }
            ]
        },
    }
    scrubbed = json.dumps(scrub_event(event, {}))
    assert "ext-secret" not in scrubbed
    assert "duplicate key value violates unique constraint" in scrubbed
    assert "http://hook.test/in" in scrubbed


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://portal.test/console/invitations/inv-secret-token/", "/console/invitations/"),
        ("https://portal.test/console/password-reset/MQ/inv-secret-token/", "/password-reset/"),
    ],
)
def test_secrets_in_console_link_paths_are_cut_from_reports(url, kept):
    """An invitation or password-reset link carries its secret in the path, not the query."""
    event = {"request": {"url": url, "method": "GET"}}
    scrubbed = json.dumps(scrub_event(event, {}))
    assert "inv-secret-token" not in scrubbed
    assert kept in scrubbed
    untouched = {"request": {"url": "https://portal.test/console/invitations/accept/"}}
    assert scrub_event(untouched, {})["request"]["url"].endswith("/invitations/accept/")
