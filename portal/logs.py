"""Log records an operator can use: each carries the request id of the request or task it was
written in, production writes one JSON object per line, and a few known noisy records lose
their traceback (the message says it all).

Nothing here decides what is logged; what must never be logged (secrets, external ids) is kept
out where lines are written: the request summary names the route pattern, never the path
or query string.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from portal import context

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

_PLAIN = (str, int, float, bool, type(None))

# Records whose traceback tells nothing their message does not: a refused Host header (any
# scanner sends them) and Django's 4xx/5xx notes for responses our handlers already rendered.
_WITHOUT_TRACEBACK = ("django.security.DisallowedHost",)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (`-` outside requests and tasks) and
    drops the traceback of records that are better as one line. A handler filter, so it sees
    the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = context.request_id.get() or "-"
        if record.exc_info and record.name.startswith(_WITHOUT_TRACEBACK):
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, any `extra=`
    fields, and the traceback (as one string) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for name, value in vars(record).items():
            # Only plain values: Django attaches the request object itself, whose text is the
            # raw path with its query string (external ids, a key sent as a parameter).
            if name not in _STANDARD and not name.startswith("_") and isinstance(value, _PLAIN):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_format_from(env: Any) -> str:
    """`LOG_FORMAT`, by default JSON unless `DEBUG` (one rule for Django and gunicorn)."""
    return env.str("LOG_FORMAT", default="text" if env.bool("DEBUG", default=False) else "json")


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING setting: `json` or `text` lines on stderr, every one with its request id."""
    if log_format not in {"json", "text"}:
        raise ValueError(f"LOG_FORMAT must be 'json' or 'text', not {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "portal.logs.RequestIdFilter"}},
        "formatters": {
            "json": {"()": "portal.logs.JsonFormatter"},
            "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # gunicorn's own lines (start, stop, worker exits) through the same handler.
            "gunicorn.error": {"level": level, "propagate": True},
            "django.db.backends": {"level": "WARNING"},
            # "no .env file" at every start: the environment itself is the usual source.
            "environ": {"level": "WARNING"},
            # Django notes every 4xx as "Not Found: /users/…"; the request summary line says
            # the same without the path. Errors (5xx, with their traceback) still come through.
            "django.request": {"level": "ERROR"},
            # runserver's access line carries the raw path and query string (external ids);
            # the summary line replaces it.
            "django.server": {"level": "ERROR"},
        },
    }
