"""portal.settings for a Celery worker process that a test starts on the shared Redis: its
broker keys carry the prefix in TEST_REDIS_KEY_PREFIX (see tests/celery_worker.py), so the
worker neither reads nor leaves anything outside the test's own keys."""

import os

from portal.settings import *  # noqa: F403
from portal.settings import CELERY_BROKER_TRANSPORT_OPTIONS

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "global_keyprefix": os.environ["TEST_REDIS_KEY_PREFIX"],
}
