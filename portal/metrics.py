"""Prometheus metrics: what an operator alerts on, served at `/metrics`.

Under gunicorn several worker processes serve requests, and a Celery worker on the same host
runs the tasks: with `PROMETHEUS_MULTIPROC_DIR` set (to a directory emptied at each start,
shared by all of them), prometheus-client keeps each process's values in files there and
`/metrics` adds them up. Without it (runserver, the tests) the values live in this process.

Label values are bounded by construction: a route is the URL pattern, never the raw path; an
outcome is an error code of the contract; a task is a registered task name. An id, key or
external id never becomes a label.

This module is imported by gunicorn's config (for `child_exit`) before Django is set up, so
at import it touches neither the settings nor the URL configuration.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.signals import task_failure, task_postrun, task_prerun
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import Resolver404, ResolverMatch, get_resolver, get_urlconf, resolve
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from portal.errors import DomainError, ErrorCode, error_response

log = logging.getLogger("portal.metrics")

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_DIR_VARIABLE):
    # prometheus-client writes there from the first increment and reads it at each scrape;
    # a missing directory would fail both, so it is made at start (its emptying is the
    # start script's job: see docs/DEPLOY.md).
    os.makedirs(os.environ[MULTIPROC_DIR_VARIABLE], exist_ok=True)

# Seconds. Requests: from a cached 401 (~1 ms) to a statement timeout (seconds).
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Tasks and sweeps: from a no-op purge to a sweep of millions of rows in batches.
_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

HTTP_REQUESTS = Counter(
    "portal_http_requests_total",
    "Requests answered, by route (URL pattern), method and status.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer a request (inside the request-id middleware), by route and method.",
    ["route", "method"],
    buckets=_REQUEST_BUCKETS,
)
ISSUANCES = Counter(
    "portal_issuances_total",
    "Authentication-code issuances (POST /users/auth-code), by outcome: ok or the error code.",
    ["outcome"],
)
REDEMPTIONS = Counter(
    "portal_redemptions_total",
    "Code redemptions (POST /sdk/users), by outcome: ok or the error code.",
    ["outcome"],
)
THROTTLED = Counter(
    "portal_throttled_total",
    "Requests refused with 429, by the rate limit they hit.",
    ["limit"],
)
THROTTLE_FAIL_OPEN = Counter(
    "portal_throttle_fail_open_total",
    "Requests let through unchecked because the rate-limit store (Redis) failed, by limit.",
    ["limit"],
)
TASK_RUNS = Counter(
    "portal_task_runs_total",
    "Celery task runs that finished (succeeded, failed or asked for a retry), by task.",
    ["task"],
)
TASK_FAILURES = Counter(
    "portal_task_failures_total",
    "Celery task runs that raised, by task.",
    ["task"],
)
TASK_DURATION = Histogram(
    "portal_task_duration_seconds",
    "Time a Celery task run took, by task.",
    ["task"],
    buckets=_JOB_BUCKETS,
)
SWEEP_DURATION = Histogram(
    "portal_sweep_duration_seconds",
    "Time a sweep took: auth_codes (expire and purge codes) or deletions (overdue purges).",
    ["sweep"],
    buckets=_JOB_BUCKETS,
)
SWEEP_ROWS = Counter(
    "portal_sweep_rows_total",
    "Rows a sweep handled, by sweep and kind (auth_codes: expired, purged; deletions: purged).",
    ["sweep", "kind"],
)
WEBHOOK_ATTEMPTS = Counter(
    "portal_webhook_attempts_total",
    "Webhook delivery attempts, by result: succeeded (2xx), rejected (another answer), "
    "unreachable (no answer: refused address, connection error, timeout), not_sent (the "
    "signing secret could not be decrypted).",
    ["result"],
)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "portal_webhook_attempt_duration_seconds",
    "Time a webhook receiver took to answer (or to fail), per attempt sent.",
    buckets=_REQUEST_BUCKETS,
)
WEBHOOK_DELIVERIES_FAILED = Counter(
    "portal_webhook_deliveries_failed_total",
    "Webhook deliveries given up WEBHOOK_RETRY_FOR after their event, whether retried all "
    "along or held back by a disabled endpoint (a failed test event is not counted).",
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "portal_webhook_endpoints_auto_disabled_total",
    "Webhook endpoints disabled automatically after failing for WEBHOOK_RETRY_FOR.",
)

# POSTs to these routes (their URL names in portal/urls.py) are counted by outcome.
_OUTCOME_COUNTERS: dict[str, Counter] = {"auth-code": ISSUANCES, "sdk-redeem": REDEMPTIONS}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED = "unmatched"
_WARNING_INTERVAL_SECONDS = 60.0
_warned_at = -_WARNING_INTERVAL_SECONDS


def _metrics_failed(what: str) -> None:
    """Metrics only observe: a failure to record one (a full disk under the multiprocess
    directory) must not fail the request or the task. Logged at most once a minute."""
    global _warned_at
    now = time.monotonic()
    if now - _warned_at >= _WARNING_INTERVAL_SECONDS:
        _warned_at = now
        log.warning(
            "metrics: recording %s failed (warned at most once a minute)", what, exc_info=True
        )


def _route(request: HttpRequest, status: int) -> ResolverMatch | None:
    """The URL pattern that handled the request. Answers given before URL resolution (413 for
    an oversized body, WhiteNoise's static files) are resolved here; 404s are not, as an
    unknown path stays unknown and scanners should cost nothing more."""
    match = request.resolver_match
    if match is None and status != 404:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return None
    return match


def route_of(request: HttpRequest, status: int) -> str:
    """The route label of a request: its URL pattern, or `unmatched` (also the request
    summary's, so logs and metrics name routes alike)."""
    match = _route(request, status)
    return match.route if match is not None and match.route else _UNMATCHED


def _outcome(response: HttpResponse) -> str:
    if response.status_code < 400:
        return "ok"
    code = getattr(response, "error_code", None)  # set by portal.errors.error_response
    if code is not None:
        return str(code)
    return ErrorCode.INTERNAL_ERROR.value if response.status_code >= 500 else "other"


class MetricsMiddleware:
    """Counts and times every request: one counter increment and one histogram observation
    (plus one increment on issuance and redemption). Placed right after the request-id
    middleware, so it sees every answer, the early 413s and the 500s included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        try:
            status = response.status_code
            match = _route(request, status)
            route = match.route if match is not None else _UNMATCHED
            method = request.method if request.method in _METHODS else "other"
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_REQUEST_DURATION.labels(route, method).observe(elapsed)
            if match is not None and method == "POST" and match.url_name in _OUTCOME_COUNTERS:
                _OUTCOME_COUNTERS[match.url_name].labels(_outcome(response)).inc()
        except Exception:
            _metrics_failed("a request")
        return response


def record_sweep(sweep: str, seconds: float, **rows: int) -> None:
    """Records one sweep run: its duration and the rows it handled, by kind."""
    try:
        SWEEP_DURATION.labels(sweep).observe(seconds)
        for kind, count in rows.items():
            SWEEP_ROWS.labels(sweep, kind).inc(count)
    except Exception:
        _metrics_failed("a sweep")


def record_webhook_attempt(*, result: str, seconds: float | None) -> None:
    """Records one delivery attempt: its result and, for an attempt sent, how long it took."""
    try:
        WEBHOOK_ATTEMPTS.labels(result).inc()
        if seconds is not None:
            WEBHOOK_ATTEMPT_DURATION.observe(seconds)
    except Exception:
        _metrics_failed("a webhook attempt")


# Task start times by task id, from task_prerun to task_postrun (same process, same thread).
_task_started: dict[str, float] = {}


def _task_prerun(*, task_id: str, **_: Any) -> None:
    _task_started[task_id] = time.perf_counter()


def _task_postrun(*, task_id: str, task: Task, **_: Any) -> None:
    started = _task_started.pop(task_id, None)
    try:
        TASK_RUNS.labels(task.name).inc()
        if started is not None:
            TASK_DURATION.labels(task.name).observe(time.perf_counter() - started)
    except Exception:
        _metrics_failed("a task run")


def _task_failure(*, sender: Task, **_: Any) -> None:
    try:
        TASK_FAILURES.labels(sender.name).inc()
    except Exception:
        _metrics_failed("a task failure")


def connect_task_signals() -> None:
    """Called once per process from PortalConfig.ready(), so the web processes (eager tasks)
    and the Celery worker both count their task runs."""
    task_prerun.connect(_task_prerun, dispatch_uid="portal.metrics.task_prerun")
    task_postrun.connect(_task_postrun, dispatch_uid="portal.metrics.task_postrun")
    task_failure.connect(_task_failure, dispatch_uid="portal.metrics.task_failure")


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's `child_exit` hook: drops the live-gauge files of a worker that exited
    (prometheus-client's documented requirement in multiprocess mode; its counters and
    histograms stay and are still added up)."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        multiprocess.mark_process_dead(worker.pid)


def _registry() -> CollectorRegistry:
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def _token_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        supplied.strip().encode(), token.encode()
    )


@csrf_exempt  # else a POST would meet a CSRF 403 and so reveal that the path exists
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format, for a scraper holding `METRICS_TOKEN`. Without the setting,
    or without the right token, the answer is the 404 of an unknown path: who has no token
    learns nothing, not even that the endpoint exists (a 401 would confirm it)."""
    token = settings.METRICS_TOKEN
    if not token or not _token_matches(request, token):
        not_found = get_resolver(get_urlconf()).resolve_error_handler(404)
        return not_found(request, Http404())
    if request.method not in {"GET", "HEAD"}:
        return error_response(
            request,
            DomainError(ErrorCode.METHOD_NOT_ALLOWED, f'Method "{request.method}" not allowed.'),
        )
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
