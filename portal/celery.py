"""The Celery app: Redis as broker (REDIS_URL); without it tasks run in-process.

A task carries the request id of the request that enqueued it (a message header), so its log
lines meet the request's."""

import os
from typing import Any

from celery import Celery, signals

from portal import context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.before_task_publish.connect
def _send_request_id(headers: dict[str, Any], **kwargs: Any) -> None:
    request_id = context.request_id.get()
    if request_id is not None:
        headers.setdefault("request_id", request_id)


_tokens: dict[str, Any] = {}


@signals.task_prerun.connect
def _take_request_id(task_id: str, task: Any, **kwargs: Any) -> None:
    # A task run in-process (no REDIS_URL) keeps the id of the request it runs in.
    inherited = getattr(task.request, "request_id", None) or context.request_id.get()
    _tokens[task_id] = context.request_id.set(inherited)


@signals.task_postrun.connect
def _drop_request_id(task_id: str, **kwargs: Any) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        context.request_id.reset(token)
