"""What the current request or task is, for every log line, metric and error report made
while it runs. Context variables, so threads (gunicorn's gthread workers) and Celery tasks
each see their own."""

from __future__ import annotations

from contextvars import ContextVar

# The request id of the request being served, or the one a task inherited from the request
# that enqueued it; None outside both.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Public ids the request turned out to concern (`app_id`, `key_id`), for its summary line.
# None outside a request, so tagging outside one does nothing.
request_tags: ContextVar[dict[str, str] | None] = ContextVar("request_tags", default=None)


def tag_request(**tags: str) -> None:
    """Notes public ids (never a secret or an external id) on the current request."""
    current = request_tags.get()
    if current is not None:
        current.update(tags)
