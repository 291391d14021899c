"""Settings of the HTTP benchmark's server (`bench/http.py`): the portal's own, plus the bench
URLs (`bench/urls.py`) and the peer's app, djangorestframework-api-key (the `bench` extra).
Never used by the product: its URLs and migrations stay as they are."""

from portal.settings import *  # noqa: F403
from portal.settings import INSTALLED_APPS

# Before axes, which asks to stay last.
INSTALLED_APPS = [*INSTALLED_APPS[:-1], "rest_framework_api_key", INSTALLED_APPS[-1]]
ROOT_URLCONF = "bench.urls"
