"""Times as the services store them."""

from __future__ import annotations

import datetime as dt


def whole_seconds(moment: dt.datetime) -> dt.datetime:
    """Expiry times are shown to the second; store them so, and what is shown is exact."""
    return moment.replace(microsecond=0)
