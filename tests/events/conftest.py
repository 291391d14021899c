from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.events.receiver import Receiver, receiver


@pytest.fixture(autouse=True)
def _local_receivers_allowed(settings) -> None:
    """The receivers of these tests are plain http on 127.0.0.1, which the portal refuses by
    default; the SSRF tests turn the guard back on themselves."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as state:
        yield state
