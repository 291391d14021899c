"""gunicorn's configuration for the web process (`gunicorn -c python:portal.gunicorn
portal.wsgi`, see the Procfile), and the worker class it runs.

gunicorn reads every module-level name here that matches one of its settings; private helpers
start with an underscore so they can never be taken for one. The `GUNICORN_CMD_ARGS`
environment variable still overrides any of them (`--keep-alive 5`, `--bind 0.0.0.0:8000`).
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Any

import environ
from gunicorn import glogging, util
from gunicorn.http.errors import (
    ConfigurationProblem,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    LimitRequestHeaders,
    LimitRequestLine,
    ParseException,
)
from gunicorn.workers.gthread import ThreadWorker

from portal import context, metrics
from portal.errors import ErrorCode, error_body
from portal.logs import log_format_from, logging_config

_env = environ.Env()
# The same `.env` file the settings honour, so `WEB_THREADS=…` there works without honcho too.
environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)

_log = logging.getLogger("portal.gunicorn")

bind = [f"127.0.0.1:{_env.int('PORT', default=8000)}"]

# Worker processes x threads. A request is mostly waiting on PostgreSQL (the CPU cost is one
# SHA-256), so threads share a core well; a thread held by a slow client or a slow query leaves
# the others serving, where a sync worker would be blocked whole. Each thread keeps its own
# database connection: a web process opens up to workers x threads of them.
workers = _env.int("WEB_CONCURRENCY", default=2)
threads = _env.int("WEB_THREADS", default=8)
worker_class = "portal.gunicorn.PortalThreadWorker"

# With gthread this is the worker's heartbeat, not a request deadline: the main loop beats
# while threads serve, so only a worker whose loop is stuck (a deadlock, the interpreter
# wedged in C code) is killed and replaced. Requests are bounded by the database's
# statement timeout instead. gunicorn's default.
timeout = 30
# On SIGTERM (deploy, scale-in), in-flight requests get this long to finish. Web requests take
# at most a few seconds (the database's statement timeout), and 20 s stays inside the usual
# 30 s a platform waits before SIGKILL (Kubernetes, Heroku, ECS).
graceful_timeout = 20
# Idle kept-alive connections wait in the worker's poller without holding a thread. The
# buffering proxy in front reuses its upstream connections; this must outlast the proxy's own
# idle timeout (nginx upstream keepalive_timeout and an AWS ALB both use 60 s), otherwise
# gunicorn closes a connection just as the proxy sends a request on it and the client gets a
# 502. A client connected directly gets the same wait, bounded by worker_connections.
keepalive = 75

# The longest request line the API needs is `GET /users?external_id=` with 256 characters
# percent-encoded (up to 12 bytes each): about 3,100 bytes, under gunicorn's default 4094.
limit_request_line = 4094
# Browsers send about 20 headers, and each proxy adds a few (X-Forwarded-*, tracing); 64 leaves
# room for a chain of them and refuses header floods early.
limit_request_fields = 64
# The longest legitimate field is an admin cookie or a bearer token, well under 8 KiB.
limit_request_field_size = 8190

# The Django middleware writes one summary line per request (without customer ids); gunicorn's
# access log would repeat it with the raw query string (external ids, a key sent by mistake).
accesslog = None
# gunicorn's own lines go through the portal's handler: JSON with a request id, like the rest.
logger_class = "portal.gunicorn.PortalLogger"
logconfig_dict = logging_config(
    log_format=log_format_from(_env), level=_env.str("LOG_LEVEL", default="INFO")
)

# gunicorn turns X-Forwarded-Proto into wsgi.url_scheme only for the peers listed here. Like
# Django's SECURE_PROXY_SSL_HEADER, that is trusted only when NUM_PROXIES says a proxy of
# ours is in front; otherwise any client could declare its plain-http request secure.
forwarded_allow_ips = (
    _env.str("FORWARDED_ALLOW_IPS", default="127.0.0.1")
    if _env.int("NUM_PROXIES", default=0) > 0
    else ""
)

# prometheus-client's multiprocess mode: the live gauges of a worker that exited are dropped
# (a server hook, run in the master; portal/metrics.py).
child_exit = metrics.child_exit

# gunicorn's control socket (for `gunicornc`) defaults to one path per user, which two web
# processes on one host would fight over; signals (TERM, HUP, TTIN/TTOU) are the interface.
control_socket_disable = True

_WORDS = re.compile(r"(?<!^)(?=[A-Z])")


def _refusal(exc: BaseException, cfg: Any) -> tuple[int, ErrorCode, str]:
    """The status, contract code and message for what gunicorn refused before Django saw the
    request. HTTP's own statuses stay (414, 431) so clients and proxies understand them; the
    contract's closest code is INVALID_REQUEST: nothing was too large but the request's own
    head, which PAYLOAD_TOO_LARGE (the body) does not describe. Messages never quote the
    request: its line may carry an external id or a key."""
    if isinstance(exc, InvalidResponseHeader | InvalidResponseHeaderName | ConfigurationProblem):
        return _internal_error()
    if isinstance(exc, LimitRequestLine):
        return (
            HTTPStatus.REQUEST_URI_TOO_LONG.value,
            ErrorCode.INVALID_REQUEST,
            f"The request line is too long: at most {cfg.limit_request_line} bytes.",
        )
    if isinstance(exc, LimitRequestHeaders):
        return (
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE.value,
            ErrorCode.INVALID_REQUEST,
            f"The request headers are too large: at most {cfg.limit_request_fields} fields "
            f"of {cfg.limit_request_field_size} bytes each.",
        )
    if isinstance(exc, ParseException | ssl.SSLError):
        what = _WORDS.sub(" ", type(exc).__name__).lower()  # InvalidRequestLine: "invalid …"
        code = ErrorCode.INVALID_REQUEST
        return code.status, code, f"Malformed HTTP request ({what})."
    return _internal_error()


def _internal_error() -> tuple[int, ErrorCode, str]:
    code = ErrorCode.INTERNAL_ERROR
    return code.status, code, "Internal error; quote the request id to support."


class PortalLogger(glogging.Logger):
    """gunicorn's logger configured from `logconfig_dict`, which would otherwise switch its
    access log on (and build every access line's fields, only to have them dropped)."""

    @property
    def access_log_enabled(self) -> bool:
        return False


class _Refused:
    """What `error_body` reads from a request: its id. gunicorn refused this one before a
    Django request existed."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id


class PortalThreadWorker(ThreadWorker):
    """gunicorn's gthread worker with two changes.

    - It stops accepting connections while all its threads are busy, so the kernel hands new
      connections to a worker that has a free thread instead of queueing them behind slow
      clients here.
    - What gunicorn refuses itself (a malformed request line, a request line or headers over
      the limits) is answered with the contract's JSON envelope and an `X-Request-ID`, not
      gunicorn's HTML page, and logged in one line that never quotes the request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy_threads = 0

    def enqueue_req(self, conn: Any) -> None:
        self._busy_threads += 1
        if self._busy_threads >= self.cfg.threads:
            self.set_accept_enabled(False)
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        # The main loop re-enables accepting on its next turn (set_accept_enabled below).
        self._busy_threads -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self._busy_threads < self.cfg.threads)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, code, message = _refusal(exc, self.cfg)
        request_id = uuid.uuid4().hex
        # Its log lines carry the request id the way a Django request's do.
        token = context.request_id.set(request_id)
        try:
            fields = {"status": status, "errorCode": code.value}
            if status >= 500:
                _log.exception("failed in gunicorn: %s", type(exc).__name__, extra=fields)
            else:
                _log.warning("refused by gunicorn: %d %s", status, type(exc).__name__, extra=fields)
            body = json.dumps(error_body(_Refused(request_id), code, message)).encode()
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                "Connection: close\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"X-Request-ID: {request_id}\r\n"
                "\r\n"
            ).encode("ascii")
            # Non-blocking, like gunicorn's own error page: a client that does not read its
            # answer cannot hold the thread.
            util.write_nonblock(client, head + body)
        except OSError:
            _log.debug("the client left before its error answer")
        finally:
            context.request_id.reset(token)
